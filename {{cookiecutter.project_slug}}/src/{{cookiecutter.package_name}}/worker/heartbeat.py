"""Per-worker liveness: each worker beats every few seconds, into a Redis key of its own (which
the web lists) and into a local file, its proof of life (which the probe reads).

arq's own `--check` key is shared by every worker of a queue (one stopping fails the check for all)
and refreshed hourly. The key here names one worker. The proof of life needs no Redis: during a
Redis outage a restart cannot help, so the probe must keep passing for a worker that waits it out,
and fail only for one whose event loop or poll loop is stuck (worker.process), which a restart
fixes.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from arq.cron import CronJob, next_cron
from redis.asyncio import Redis

from ..cancellation import raise_if_cancelled
from ..queue.liveness import encode_beat, registry_key
from ..queue.unavailable import unavailable
from ..settings import QueueKey, Settings
from .outage import REDIS_ERRORS

log = logging.getLogger(__name__)


def worker_name(settings: Settings) -> str:
    """This worker's name in its liveness key and on the dashboard: WORKER_ID, else host name and
    process id, so that workers on one host (a dev machine, a VM) stay apart."""
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"


def worker_key(settings: Settings, queue: QueueKey = "default") -> str:
    """The liveness key of this process's worker of one queue (a process may run one per queue)."""
    return f"{settings.queue_for(queue)}:worker:{worker_name(settings)}"


def host_worker(settings: Settings, queue: QueueKey = "default") -> str:
    """This host's worker of one queue, as its probe knows it: WORKER_ID, else the host name (the
    probe is a process of its own, so not the worker's process id). One worker per container."""
    return f"{settings.queue_for(queue)}:worker:{settings.worker_id or socket.gethostname()}"


def key_ttl(settings: Settings) -> int:
    """Three missed beats and the key is gone (and the proof of life is stale)."""
    return max(1, round(settings.worker_heartbeat_interval * 3))


def proof_path(settings: Settings, queue: QueueKey = "default") -> Path:
    """The proof of life of this host's worker of one queue: a file in the temporary folder (an
    emptyDir in Kubernetes, where the root file system is read-only)."""
    key = host_worker(settings, queue)
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:100]
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]  # names that differ stay apart
    return Path(tempfile.gettempdir()) / f"{readable}-{digest}.alive"


def write_proof(path: Path, redis_ok_at: float | None, redis_error: str | None) -> None:
    """Refresh the proof of life (its modification time is what counts); what it holds, the
    state of Redis as this worker last saw it, is for the probe's message only."""
    state = {"redis_ok_at": redis_ok_at, "redis_error": redis_error}
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    try:
        partial.write_text(json.dumps(state))
        partial.replace(path)  # whole or not at all: the probe never reads half a file
    except OSError as exc:
        log.warning("could not write the proof of life %s: %s", path, exc)


def next_runs(cron_jobs: Sequence[CronJob], now: datetime) -> dict[str, datetime]:
    """When each cron job runs next after `now`."""
    return {
        job.name: next_cron(
            now,
            month=job.month,
            day=job.day,
            weekday=job.weekday,
            hour=job.hour,
            minute=job.minute,
            second=job.second,
            microsecond=job.microsecond,
        )
        for job in cron_jobs
    }


async def beat_forever(
    redis: Redis,
    settings: Settings,
    queue: QueueKey,
    running: Callable[[], int] = lambda: 0,
    wedged: Callable[[], float | None] = lambda: None,
    cron_jobs: Sequence[CronJob] = (),
) -> None:
    """Beat until cancelled; `running` tells how many jobs the worker runs, `wedged` for how many
    seconds its poll loop has been stuck (None while it turns), `cron_jobs` what it schedules
    (their next runs go into each beat, for the dashboard)."""
    key, ttl = worker_key(settings, queue), key_ttl(settings)
    registry = registry_key(settings.queue_for(queue))
    worker_id = worker_name(settings)
    proof = proof_path(settings, queue)
    redis_ok_at: float | None = None
    redis_error: str | None = None
    try:
        while True:
            raise_if_cancelled()  # the worker's shutdown cancels this task; 3.11 may lose that
            now = time.time()
            stuck = wedged()
            if stuck is not None:
                # No beat at all: the probe fails, and the platform restarts this worker.
                log.error("the worker's poll loop has not turned for %.0f s", stuck)
                await asyncio.sleep(settings.worker_heartbeat_interval)
                continue
            cron = next_runs(cron_jobs, datetime.fromtimestamp(now, tz=UTC))
            try:
                # A stalled Redis must not hold up the next beat (nor the proof of life).
                async with asyncio.timeout(settings.worker_heartbeat_interval):
                    async with redis.pipeline(transaction=False) as pipe:
                        beat = encode_beat(
                            worker_id, settings.queue_for(queue), now, running(), cron
                        )
                        pipe.set(key, beat, ex=ttl)
                        pipe.zadd(registry, {key: now})
                        pipe.zremrangebyscore(registry, "-inf", now - ttl)  # the departed
                        await pipe.execute()
                redis_ok_at, redis_error = now, None
            except REDIS_ERRORS as exc:  # keep beating; if Redis stays away the key expires
                redis_error = str(exc) or type(exc).__name__
                # (a bug is no reason to stop beating either, but it is logged as one)
                log.log(
                    logging.WARNING if unavailable(exc) else logging.ERROR,
                    "liveness write failed: %s",
                    redis_error,
                    exc_info=not unavailable(exc),
                )
            write_proof(proof, redis_ok_at, redis_error)
            await asyncio.sleep(settings.worker_heartbeat_interval)
    finally:
        # A clean stop removes the proof at once (as lifecycle.shutdown removes the key).
        with contextlib.suppress(OSError):
            proof.unlink(missing_ok=True)
