"""The Redis a process uses: REDIS_URL, else the default address, where an embedded
server is started when nothing answers."""

from __future__ import annotations

from framework.core import (
    EmbeddedRedis,
    Logger,
    Settings,
    redis_answers,
)


async def resolve_redis_url(settings: Settings, logger: Logger) -> str:
    """REDIS_URL if set; else the default address, starting an embedded server
    there when nothing answers. Raises RedisUnavailableError."""
    if settings.redis_url:
        return settings.redis_url
    url = settings.redis_default_url
    if await redis_answers(url):
        return url
    logger.info("redis_not_found_starting_embedded", url=url)
    embedded = EmbeddedRedis(
        url, data_dir=settings.data_dir, binary=settings.redis_server_bin, logger=logger
    )
    return await embedded.ensure_running()

