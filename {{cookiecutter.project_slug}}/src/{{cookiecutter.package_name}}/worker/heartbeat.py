"""Per-worker liveness: each worker refreshes a Redis key of its own; the probe reads it.

arq's own `--check` key is shared by every worker of a queue (one stopping fails the check for all)
and refreshed hourly. This key names one worker and is refreshed every few seconds by a loop that
needs both the event loop and a Redis round trip to work, so its presence proves both.
"""

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from datetime import {% if cookiecutter.use_cron %}UTC, {% endif %}datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..queue.liveness import encode_beat, registry_key
from ..settings import QueueKey, Settings
{%- if cookiecutter.use_cron %}
from .cron import next_runs
{%- endif %}

log = logging.getLogger(__name__)


def worker_name(settings: Settings) -> str:
    return settings.worker_id or socket.gethostname()


def worker_key(settings: Settings, queue: QueueKey = "default") -> str:
    """The liveness key of this process's worker of one queue (a host may run one per queue)."""
    return f"{settings.queue_for(queue)}:worker:{worker_name(settings)}"


def key_ttl(settings: Settings) -> int:
    """Three missed beats and the key is gone."""
    return max(1, round(settings.worker_heartbeat_interval * 3))


async def beat_forever(
    redis: Redis,
    settings: Settings,
    queue: QueueKey,
    running: Callable[[], int] = lambda: 0,
) -> None:
    """Refresh this worker's key until cancelled; `running` tells how many jobs it runs."""
    key, ttl = worker_key(settings, queue), key_ttl(settings)
    registry = registry_key(settings.queue_for(queue))
    worker_id = worker_name(settings)
    while True:
        now = time.time()
{%- if cookiecutter.use_cron %}
        # Cron runs on the default queue's workers only (worker.settings).
        cron = next_runs(datetime.fromtimestamp(now, tz=UTC)) if queue == "default" else {}
{%- else %}
        cron: dict[str, datetime] = {}
{%- endif %}
        try:
            async with redis.pipeline(transaction=False) as pipe:
                beat = encode_beat(worker_id, settings.queue_for(queue), now, running(), cron)
                pipe.set(key, beat, ex=ttl)
                pipe.zadd(registry, {key: now})
                pipe.zremrangebyscore(registry, "-inf", now - ttl)  # the departed
                await pipe.execute()
        except (RedisError, OSError) as exc:  # keep beating; if Redis stays away the key expires
            log.warning("liveness write failed: %s", exc)
        await asyncio.sleep(settings.worker_heartbeat_interval)
