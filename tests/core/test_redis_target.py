"""REDIS_URL's forms: one server, Sentinel, Cluster; what is wrong is named, never the URL."""

from __future__ import annotations

import pytest

from framework.core import ConfigError, parse_redis_target, read_settings


def test_a_sentinel_url_names_the_sentinels_the_service_the_db_and_the_password() -> None:
    target = parse_redis_target("redis+sentinel://:s3cret-pw@10.0.0.1:26379,sentinel-b/cache/2")

    assert target.mode == "sentinel"
    assert target.hosts == (("10.0.0.1", 26379), ("sentinel-b", 26379))
    assert (target.service_name, target.db, target.password) == ("cache", 2, "s3cret-pw")
    assert "s3cret-pw" not in repr(target)


def test_a_cluster_url_names_every_seed_node() -> None:
    target = parse_redis_target("rediss+cluster://user:pw@node-a:7000,node-b:7001")

    assert target.mode == "cluster" and target.tls
    assert target.hosts == (("node-a", 7000), ("node-b", 7001))
    assert target.username == "user"


def test_redis_urls_stay_single_server_unless_the_cluster_flag_is_set() -> None:
    assert parse_redis_target("redis://h:6379/0").mode == "single"
    assert parse_redis_target("unix:///run/redis.sock").mode == "single"
    assert parse_redis_target("redis://h:6379", cluster=True).mode == "cluster"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+sentinel://h:26379", "needs the master's service name"),
        ("redis+sentinel://h:26379/svc/zero", "database 'zero' is not a number"),
        ("redis+sentinel://h:26379/svc/1/x", "too many parts"),
        ("redis+cluster://h:7000/3", "has only database 0"),
        ("redis+cluster://h:70x0,:1", "address #1 (h) has a port that is not a number"),
        ("redis+cluster://h:7000,:7001", "address #2 has no host"),
    ],
)
def test_a_malformed_url_names_the_bad_part(url: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_redis_target(url)
    assert reason in str(caught.value)


def test_redis_cluster_true_makes_the_settings_url_a_cluster_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:pw-value-1@node-a:7000")
    monkeypatch.setenv("REDIS_CLUSTER", "true")

    assert read_settings().redis_url == "redis+cluster://:pw-value-1@node-a:7000"


def test_a_bad_sentinel_url_is_one_line_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://:hunter2-pw@h:26379")

    with pytest.raises(ConfigError) as caught:
        read_settings()

    assert str(caught.value).startswith("invalid settings: REDIS_URL: redis+sentinel:// needs")
    assert "hunter2-pw" not in str(caught.value)


def test_the_durability_settings_are_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_MIN_REPLICAS_ACKS", "2")
    monkeypatch.setenv("REDIS_REPLICAS_ACK_TIMEOUT_MS", "250")
    settings = read_settings()
    assert (settings.redis_min_replicas_acks, settings.redis_replicas_ack_timeout_ms) == (2, 250)

    monkeypatch.setenv("REDIS_MIN_REPLICAS_ACKS", "-1")
    with pytest.raises(ConfigError, match="REDIS_MIN_REPLICAS_ACKS"):
        read_settings()
