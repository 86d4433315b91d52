"""Redis clients for the job store: a plain Redis URL, or Redis Sentinel as kombu spells it.

A Sentinel URL lists the sentinels, `;`-separated, each with kombu's `sentinel://` scheme:
`sentinel://:password@10.0.0.1:26379;sentinel://10.0.0.2:26379/0`. The password and the
database number (on any entry) are the primary's; the master's name is a setting of its own
(`LSTMGEN_REDIS_SENTINEL_MASTER`), as kombu takes it in `master_name`. A client of a Sentinel
URL asks the sentinels for the primary on every new connection, so it follows a failover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "sentinel"
CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 2.0,
    "socket_timeout": 30.0,
    "health_check_interval": 15,
}


@dataclass(frozen=True)
class SentinelAddress:
    """The sentinels of a Sentinel URL, and the primary's database and password."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    password: str | None = None


def is_sentinel(url: str) -> bool:
    """Return whether a Redis URL names sentinels rather than one server."""
    return url.strip().lower().startswith(SENTINEL_SCHEME + "://")


def parse_sentinel_url(url: str) -> SentinelAddress:
    """Parse a kombu-style Sentinel URL; raise ValueError naming what is wrong."""
    sentinels: list[tuple[str, int]] = []
    db, password = 0, None
    for entry in filter(None, (part.strip() for part in url.split(";"))):
        parts = urlsplit(entry)
        if parts.scheme.lower() != SENTINEL_SCHEME or not parts.hostname:
            raise ValueError(f"{entry!r} is not a sentinel://host:port address")
        try:
            port = parts.port or 26379
        except ValueError:
            raise ValueError(f"{entry!r} has a port that is not a number") from None
        sentinels.append((parts.hostname, port))
        if parts.password:
            password = unquote(parts.password)
        if parts.path.strip("/"):
            try:
                db = int(parts.path.strip("/"))
            except ValueError:
                raise ValueError(f"{entry!r} has a database that is not a number") from None
    if not sentinels:
        raise ValueError("a Sentinel URL needs at least one sentinel://host:port")
    return SentinelAddress(tuple(sentinels), db, password)


def connect(url: str, master: str = "", **options: Any) -> redis.Redis:
    """Return a client of the Redis at `url`, or of the primary the sentinels name `master`
    (strings decoded, short connect timeout, unless `options` say otherwise)."""
    merged = {**CLIENT_OPTIONS, **options}
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **merged)
    address = parse_sentinel_url(url)
    timeout = merged["socket_connect_timeout"]
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(address.sentinels),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        master, db=address.db, password=address.password, **merged
    )
    return client
