"""Where Redis is and which kind of deployment it is, read from one URL.

The one place that knows the URL forms a process accepts (``REDIS_URL``,
``FLEET_REDIS_DEFAULT_URL``)::

    redis://[user:password@]host:port[/db]          one server (also rediss:// for TLS, unix://)
    redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]
    redis+cluster://[user:password@]host:port[,host:port...]   (or REDIS_CLUSTER=true)

The password, if any, is the data servers' (the master's, the replicas', the
cluster nodes'); Sentinels are asked without one. Errors name the part that is
wrong, never the URL itself: it may hold a password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

Mode = Literal["single", "sentinel", "cluster"]

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SINGLE_SCHEMES = ("redis", "rediss", "unix")
# The one list of the Redis URL schemes a process accepts; a new kind of deployment adds
# its scheme here and its client in framework.core.connections.
REDIS_URL_SCHEMES = SINGLE_SCHEMES + SENTINEL_SCHEMES + CLUSTER_SCHEMES


@dataclass(frozen=True)
class RedisTarget:
    """A parsed Redis URL: the mode, the addresses to ask first and the credentials."""

    mode: Mode
    url: str = field(repr=False)  # handed to redis-py unchanged (single); holds the password
    hosts: tuple[tuple[str, int], ...] = ()  # sentinels, or cluster seed nodes
    service_name: str = ""  # sentinel: the monitored master's name
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    tls: bool = False


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower() if "://" in url else ""


def parse_redis_target(url: str, *, cluster: bool = False) -> RedisTarget:
    """The target ``url`` names; ``cluster``: a redis:// URL names a cluster seed node
    (REDIS_CLUSTER=true). Raises ValueError naming the scheme or the bad part."""
    scheme = scheme_of(url)
    if scheme not in REDIS_URL_SCHEMES:
        accepted = ", ".join(f"{s}://" for s in REDIS_URL_SCHEMES)
        given = f"scheme {scheme + '://'!r}" if scheme else "no scheme"
        raise ValueError(f"{given} is not accepted (accepted: {accepted})")
    if scheme in SENTINEL_SCHEMES:
        return _sentinel_target(url)
    if scheme in CLUSTER_SCHEMES or (cluster and scheme in ("redis", "rediss")):
        return _cluster_target(url)
    return RedisTarget(mode="single", url=url)


def _sentinel_target(url: str) -> RedisTarget:
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(
            "redis+sentinel:// needs the master's service name: "
            "redis+sentinel://host:port[,host:port...]/service_name[/db]"
        )
    if len(path) > 2:
        raise ValueError("redis+sentinel:// path is /service_name[/db]: too many parts")
    db = _db_of(path[1]) if len(path) == 2 else 0
    username, password = _credentials(parts.netloc)
    return RedisTarget(
        mode="sentinel",
        url=url,
        hosts=_hosts_of(parts.netloc, 26379),
        service_name=unquote(path[0]),
        db=db,
        username=username,
        password=password,
        tls=parts.scheme.lower().startswith("rediss"),
    )


def _cluster_target(url: str) -> RedisTarget:
    parts = urlsplit(url)
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0: drop the /db part")
    username, password = _credentials(parts.netloc)
    return RedisTarget(
        mode="cluster",
        url=url,
        hosts=_hosts_of(parts.netloc, 6379),
        username=username,
        password=password,
        tls=parts.scheme.lower().startswith("rediss"),
    )


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    """The user name and the password of ``netloc``, each None when absent."""
    if "@" not in netloc:
        return None, None
    user, _, password = netloc.rsplit("@", 1)[0].partition(":")
    return unquote(user) or None, unquote(password) or None


def _hosts_of(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hostlist = netloc.rsplit("@", 1)[-1]
    hosts = []
    for index, item in enumerate(hostlist.split(",")):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise ValueError(f"address #{index + 1} has no host (host:port)")
        if port and not port.isdigit():
            raise ValueError(f"address #{index + 1} ({host}) has a port that is not a number")
        hosts.append((host.strip("[]"), int(port) if port else default_port))
    return tuple(hosts)


def _db_of(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"database {text!r} is not a number")
    return int(text)
