"""``/api/v1/rules``, ``/api/v1/catalog``, ``/api/v1/audit`` and ``/api/v1/tokens``
over real HTTP against a real Redis: rules checked and dry-run without a side effect,
the signed catalog listed, shown and revoked, the audit chain verified with the
operators' actions in it, and tokens managed by an admin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.core import SystemClock, get_logger
from framework.trust.catalog.signing import PrivateKey, load_trust_store
from framework.trust.catalog.store import Catalog, parse_definition
from tests.conftest import FIXTURES
from tests.ops.api_client import empty_fleet, serving, tokens_for_every_role
from worker.ops import ApiOptions, Role

RULES: dict[str, Any] = {"version": 1, "rules": [{
    "name": "hot", "match": {"streams": ["readings"], "type": "temp",
                             "payload.celsius": {"gt": 30}},
    "steps": [
        {"id": "tell", "call": "log", "params": {"message": "hot: {{ payload.celsius }}"}},
        {"if": "steps.tell.ok", "then": [{"emit": {"stream": "alerts", "event": {
            "type": "hot", "payload": {"c": "{{ payload.celsius }}"}}}}]}]}, {
    "name": "cold", "match": {"streams": ["readings"], "payload.celsius": {"lt": 0}},
    "steps": [{"id": "warn", "call": "log", "params": {"message": "cold"}}]}]}


def reading(celsius: Any) -> dict[str, Any]:
    return {"stream": "readings", "event": {"type": "temp", "source": "probe-1",
                                            "payload": {"celsius": celsius}}}


async def test_rules_check_reports_every_problem_or_the_rules(redis: Redis, tmp_path: Path
                                                              ) -> None:
    viewer = (await tokens_for_every_role(redis))[Role.VIEWER]
    rules_file = tmp_path / "rules.json"
    rules_file.write_bytes(orjson.dumps(RULES))
    options = ApiOptions(rules_path=rules_file)
    async with serving(redis, empty_fleet, options=options) as (api, _):
        configured = await api.call("POST", "/api/v1/rules/check", viewer)
        broken = await api.call("POST", "/api/v1/rules/check", viewer, json_body={"rules": {
            "version": 1, "rules": [{"name": "x", "match": {"streams": ["s"]},
                                     "steps": [{"id": "a", "call": ""}], "extra": 1}]}})
        anonymous = await api.call("POST", "/api/v1/rules/check", json_body={})
    assert configured.json()["ok"] is True
    assert [(r["name"], r["calls"]) for r in configured.json()["rules"]] == [
        ("hot", ["log@*"]), ("cold", ["log@*"])]
    assert broken.json()["ok"] is False
    assert any("extra" in problem for problem in broken.json()["problems"])
    assert anonymous.status_code == 401  # a POST needs a token, even a read-only one


async def test_dry_run_shows_matches_steps_and_parameters_with_no_side_effect(
    redis: Redis,
) -> None:
    viewer = (await tokens_for_every_role(redis))[Role.VIEWER]
    keys_before = set(await redis.keys("*"))
    async with serving(redis, empty_fleet) as (api, _):
        hot = (await api.call("POST", "/api/v1/rules/dry-run", viewer,
                              json_body={**reading(41), "rules": RULES})).json()
        mild = (await api.call("POST", "/api/v1/rules/dry-run", viewer,
                               json_body={**reading(20), "rules": RULES})).json()
        junk = (await api.call("POST", "/api/v1/rules/dry-run", viewer,
                               json_body={"stream": "readings", "fields": {"x": "y"},
                                          "rules": RULES})).json()
    assert [(r["rule"], r["matched"]) for r in hot["rules"]] == [("hot", True), ("cold", False)]
    call, branch = hot["rules"][0]["steps"]
    assert (call["kind"], call["capability"], call["params"]) == (
        "call", "log", {"message": "hot: 41"})
    # The call's result is unknown in a dry run: the branch lists both sides.
    assert branch["kind"] == "if" and "undetermined" in branch
    assert branch["then"][0]["stream"] == "alerts"
    assert branch["then"][0]["event"]["payload"] == {"c": 41}
    assert [r["matched"] for r in mild["rules"]] == [False, False]
    assert junk["event"] is None and "no event contract fits" in junk["invalid"]
    # Nothing was called, emitted or recorded (only the tokens and the failed-login
    # bookkeeping exist).
    assert set(await redis.keys("*")) == keys_before


async def test_inline_rules_cannot_read_the_servers_environment(
    redis: Redis, monkeypatch: Any
) -> None:
    monkeypatch.setenv("SERVER_ONLY_SECRET", "do-not-show-this-value")
    viewer = (await tokens_for_every_role(redis))[Role.VIEWER]
    rules = {"version": 1, "rules": [{"name": "leak", "match": {"streams": ["readings"]},
                                      "steps": [{"id": "a", "call": "log", "params": {
                                          "message": "${SERVER_ONLY_SECRET}"}}]}]}
    async with serving(redis, empty_fleet) as (api, _):
        answer = await api.call("POST", "/api/v1/rules/dry-run", viewer,
                                json_body={**reading(1), "rules": rules})
    assert answer.status_code == 400
    assert "SERVER_ONLY_SECRET" in answer.json()["error"]
    assert "do-not-show-this-value" not in answer.text


async def test_catalog_list_show_and_revoke(redis: Redis) -> None:
    key = PrivateKey.generate()
    trust = load_trust_store(None, orjson.dumps([key.public().to_json()]).decode())
    catalog = Catalog(redis, trust, clock=SystemClock(), logger=get_logger(test="api"))
    for name in ("valve_control_v1.0.0.json", "valve_control_v1.1.0.json"):
        definition = parse_definition((FIXTURES / "catalog" / name).read_bytes(), source=name)
        await catalog.register(definition.signed_with(key))
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, empty_fleet, options=ApiOptions(trust=lambda: trust)) as (api, _):
        listed = (await api.call("GET", "/api/v1/catalog")).json()["capabilities"]
        shown = (await api.call("GET", "/api/v1/catalog/{id}", id="valve_control")).json()
        unknown = await api.call("GET", "/api/v1/catalog/{id}", id="nope")
        body = {"versionRange": "<1.1.0", "reason": "CVE-2026-0001"}
        denied = await api.call("POST", "/api/v1/catalog/{id}/revoke", tokens[Role.OPERATOR],
                                id="valve_control", json_body=body)
        revoked = await api.call("POST", "/api/v1/catalog/{id}/revoke", tokens[Role.ADMIN],
                                 id="valve_control", json_body=body)
        after = (await api.call("GET", "/api/v1/catalog")).json()["capabilities"]
    assert [(e["version"], e["problem"], e["revoked"]) for e in listed] == [
        ("1.0.0", None, None), ("1.1.0", None, None)]
    assert shown["version"] == "1.1.0"
    assert unknown.status_code == 404
    assert denied.status_code == 403
    assert revoked.json()["versions"] == ["1.0.0"]
    assert [e["revoked"] and e["revoked"]["reason"] for e in after] == ["CVE-2026-0001", None]


async def test_audit_verify_and_records_show_who_did_what(redis: Redis) -> None:
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, empty_fleet) as (api, _):
        created = await api.call("POST", "/api/v1/tokens", tokens[Role.ADMIN],
                                 json_body={"name": "grafana", "role": "viewer"})
        token_id = created.json()["id"]
        assert created.json()["token"].startswith("cft_")
        assert (await api.call("GET", "/api/v1/whoami", created.json()["token"])
                ).json()["actor"]["name"] == "grafana"
        revoked = await api.call("DELETE", "/api/v1/tokens/{id}", tokens[Role.ADMIN],
                                 id=token_id)
        again = await api.call("DELETE", "/api/v1/tokens/{id}", tokens[Role.ADMIN],
                               id=token_id)
        bad_role = await api.call("POST", "/api/v1/tokens", tokens[Role.ADMIN],
                                  json_body={"name": "x", "role": "root"})
        verified = (await api.call("GET", "/api/v1/audit/verify")).json()
        records = (await api.call("GET", "/api/v1/audit/records")).json()["records"]
        one = await api.call("GET", "/api/v1/audit/records/{id}", id=records[-1]["entryId"])
        missing = await api.call("GET", "/api/v1/audit/records/{id}", id="1-1")
    assert revoked.json()["revoked"] is True and again.status_code == 404
    assert bad_role.status_code == 400 and "unknown role 'root'" in bad_role.json()["error"]
    assert verified == {"ok": True, "records": 2, "signed": 0, "headHash": verified["headHash"],
                        "broken": None}
    assert [(r["body"]["action"], r["body"]["actor"]["name"]) for r in records] == [
        ("token_revoke", "admin-tester"), ("token_create", "admin-tester")]
    assert one.json()["body"]["target"] == token_id
    assert missing.status_code == 404


async def test_a_removed_audit_record_fails_verification(redis: Redis) -> None:
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, empty_fleet) as (api, _):
        for name in ("a", "b"):
            await api.call("POST", "/api/v1/tokens", tokens[Role.ADMIN],
                           json_body={"name": name, "role": "viewer"})
        assert (await api.call("GET", "/api/v1/audit/verify")).json()["ok"] is True
        first_id = (await redis.xrange("audit:chain"))[0][0]
        await redis.xdel("audit:chain", first_id)  # someone hides who created token a
        verified = (await api.call("GET", "/api/v1/audit/verify")).json()
    assert verified["ok"] is False
    assert verified["broken"]
