"""Per-worker liveness: each worker refreshes a Redis key of its own; the probe reads it.

arq's own `--check` key is shared by every worker of a queue (one stopping fails the check for all)
and refreshed hourly. This key names one worker and is refreshed every few seconds by a loop that
needs both the event loop and a Redis round trip to work, so its presence proves both.
"""

import asyncio
import logging
import socket
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..settings import QueueKey, Settings

log = logging.getLogger(__name__)


def worker_key(settings: Settings, queue: QueueKey = "default") -> str:
    """The liveness key of this process's worker of one queue (a host may run one per queue)."""
    worker_id = settings.worker_id or socket.gethostname()
    return f"{settings.queue_for(queue)}:worker:{worker_id}"


def key_ttl(settings: Settings) -> int:
    """Three missed beats and the key is gone."""
    return max(1, round(settings.worker_heartbeat_interval * 3))


async def beat_forever(redis: Redis, settings: Settings, queue: QueueKey) -> None:
    key, ttl = worker_key(settings, queue), key_ttl(settings)
    while True:
        try:
            await redis.set(key, str(time.time()), ex=ttl)
        except (RedisError, OSError) as exc:  # keep beating; if Redis stays away the key expires
            log.warning("liveness write failed: %s", exc)
        await asyncio.sleep(settings.worker_heartbeat_interval)
