"""``/api/v1/groups`` and ``/api/v1/streams/{stream}/...``: consumer groups, dead
letters (list, show, replay one, a filter or all, purge) and test events.

Dead letters are :class:`framework.consuming.DeadLetterStream`'s, the same code as
``connector-fleet dlq``. A replay re-adds the original entry to its stream (with
``replay_of``) and deletes the dead letter in one script, so a replay is never
lost nor doubled. One failed replay never stops the others: each is reported."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from framework.consuming import BaseEventV1, DeadLetterStream, describe_validation_error
from framework.core import DEFAULT_STREAM_MAXLEN, UNAVAILABLE
from worker.ops.api_support import (
    ApiDeps,
    actor_of,
    api_error,
    audited,
    checked_name,
    json_body,
    json_response,
    requires,
)
from worker.ops.consumer_groups import read_consumer_groups
from worker.ops.tokens import Role

# One request replays at most this many dead letters and reads at most MAX_SCAN of
# them looking for matches, so that it ends well within the request's deadline;
# ``next`` is where the following request goes on (``after``), None when done.
MAX_REPLAY_PER_REQUEST = 500
MAX_SCAN = 5_000
_PAGE = 500


def stream_routes(deps: ApiDeps) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/api/v1/groups")
    @requires(Role.VIEWER)
    async def list_groups(request: web.Request) -> web.Response:
        stream = request.query.get("stream")
        streams = [checked_name(stream, "query stream")] if stream else None
        groups = await read_consumer_groups(deps.redis, streams=streams,
                                            group=request.query.get("group"))
        return json_response({"groups": [group.as_json() for group in groups]})

    @routes.get("/api/v1/streams/{stream}/dead-letters")
    @requires(Role.VIEWER)
    async def list_dead_letters(request: web.Request) -> web.Response:
        letters = _letters(deps, request)
        count = _int_query(request, "count", default=100, low=1, high=1000)
        after = request.query.get("after")
        page = await letters.read(count=count, after=_entry_id(after) if after else None)
        return json_response({"stream": letters.stream, "deadLetterStream": letters.name,
                              "total": await letters.count(),
                              "deadLetters": [letter.as_json() for letter in page]})

    @routes.get("/api/v1/streams/{stream}/dead-letters/{id}")
    @requires(Role.VIEWER)
    async def show_dead_letter(request: web.Request) -> web.Response:
        letters = _letters(deps, request)
        letter = await letters.get(_entry_id(request.match_info["id"]))
        if letter is None:
            raise api_error(404, f"{letters.name}: no dead letter {request.match_info['id']}")
        return json_response(letter.as_json())

    @routes.post("/api/v1/streams/{stream}/dead-letters/replay")
    @requires(Role.OPERATOR)
    async def replay(request: web.Request) -> web.Response:
        letters = _letters(deps, request)
        selection = await json_body(request)
        ids, next_after = await _selected(letters, selection)
        result = await _replay_each(letters, ids)
        await audited(deps, request, "dlq_replay", letters.stream,
                      {"selection": selection, "replayed": len(result["replayed"]),
                       "missing": len(result["missing"]), "failed": len(result["failed"])})
        return json_response({**result, "more": next_after is not None,
                              "next": next_after})

    @routes.delete("/api/v1/streams/{stream}/dead-letters")
    @requires(Role.ADMIN)
    async def purge(request: web.Request) -> web.Response:
        letters = _letters(deps, request)
        purged = await letters.purge()
        await audited(deps, request, "dlq_purge", letters.stream, {"purged": purged})
        return json_response({"stream": letters.stream, "purged": purged})

    @routes.post("/api/v1/streams/{stream}/events")
    @requires(Role.OPERATOR)
    async def inject(request: web.Request) -> web.Response:
        stream = checked_name(request.match_info["stream"], "stream")
        fields = event_fields(await json_body(request))
        fields["injected_by"] = actor_of(request).id
        entry_id = await deps.redis.xadd(stream, fields,  # type: ignore[arg-type]
                                         maxlen=DEFAULT_STREAM_MAXLEN, approximate=True)
        await audited(deps, request, "inject_event", stream, {"entryId": entry_id})
        return json_response({"stream": stream, "entryId": entry_id}, status=201)

    return routes


def _letters(deps: ApiDeps, request: web.Request) -> DeadLetterStream:
    stream = checked_name(request.match_info["stream"], "stream")
    return DeadLetterStream(deps.redis, stream)


def _entry_id(text: str) -> str:
    head, _, tail = text.partition("-")
    if not (head.isdigit() and tail.isdigit() and len(text) <= 41):
        raise api_error(400, f"dead letter id: expected a stream entry id (1700000000000-0), "
                             f"got {text[:60]!r}")
    return text


def _int_query(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise api_error(400, f"query {name}: expected an integer from {low} to {high}")
    return int(text)


async def _selected(letters: DeadLetterStream, selection: dict[str, Any]
                    ) -> tuple[list[str], str | None]:
    """The ids a replay request names: ``ids``, or ``all``, or a ``filter`` of
    ``rule``, ``errorType`` and ``reasonContains`` (every given one must hold), from
    ``after`` on; and where the next request goes on (None: nothing is left)."""
    if "ids" in selection:
        ids = selection["ids"]
        if not isinstance(ids, list) or not ids or len(ids) > MAX_REPLAY_PER_REQUEST:
            raise api_error(400, "request body: ids: expected a list of 1 to "
                                 f"{MAX_REPLAY_PER_REQUEST} dead letter ids")
        return [_entry_id(str(i)) for i in ids], None
    wanted = selection.get("filter")
    if selection.get("all") is not True and not isinstance(wanted, dict):
        raise api_error(400, "request body: give ids (a list), all (true) or filter "
                             "(rule, errorType, reasonContains)")
    after = selection.get("after")
    after = _entry_id(str(after)) if after is not None else None
    chosen: list[str] = []
    scanned = 0
    while scanned < MAX_SCAN:
        page = await letters.read(count=_PAGE, after=after)
        if not page:
            return chosen, None
        for letter in page:
            if len(chosen) == MAX_REPLAY_PER_REQUEST:
                return chosen, after
            if wanted is None or _fits(letter.as_json(), wanted):
                chosen.append(letter.id)
            after = letter.id
        scanned += len(page)
    return chosen, after


def _fits(letter: dict[str, Any], wanted: dict[str, Any]) -> bool:
    if "rule" in wanted and letter["rule"] != wanted["rule"]:
        return False
    if "errorType" in wanted and letter["errorType"] != wanted["errorType"]:
        return False
    part = wanted.get("reasonContains")
    return part is None or str(part) in letter["reason"]


async def _replay_each(letters: DeadLetterStream, ids: list[str]) -> dict[str, Any]:
    replayed: list[dict[str, str]] = []
    missing: list[str] = []
    failed: list[dict[str, str]] = []
    for dead_letter_id in ids:
        try:
            new_id = await letters.replay(dead_letter_id)
        except UNAVAILABLE:
            raise  # Redis is gone: the whole request is a 503
        except Exception as exc:  # one bad letter (a script error) never stops the others
            failed.append({"id": dead_letter_id, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if new_id is None:
            missing.append(dead_letter_id)
        else:
            replayed.append({"id": dead_letter_id, "newId": new_id})
    return {"stream": letters.stream, "replayed": replayed, "missing": missing,
            "failed": failed}


def event_fields(body: dict[str, Any]) -> dict[str, str]:
    """``event`` (a base event, validated) or ``fields`` (raw string fields)."""
    if "event" in body:
        try:
            event = BaseEventV1.model_validate(body["event"], strict=False)
        except ValidationError as exc:
            raise api_error(400, "request body: event: "
                                 + describe_validation_error(exc, root="event")) from None
        return {"schema": "base-event/1", "event": event.model_dump_json(exclude_none=True)}
    fields = body.get("fields")
    if (not isinstance(fields, dict) or not fields
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())):
        raise api_error(400, "request body: expected event (a base event: type, source, "
                             "payload) or fields (an object of strings)")
    return dict(fields)
