"""What the benchmarks share: settings under a prefix of the run, cleanup, percentiles, tables."""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import RedisDsn
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.settings import Settings


@dataclass(frozen=True)
class Run:
    """One benchmark run: its settings (queues under `prefix`) and the job ids it made, so that
    cleanup deletes exactly what the run wrote on a Redis that others may share."""

    settings: Settings
    prefix: str
    quick: bool
    job_ids: list[str]


def bench_settings(prefix: str, redis_url: str | None) -> Settings:
    settings = Settings().model_copy(
        update={
            "queue_name": f"{prefix}:queue",
            "bulk_queue_name": f"{prefix}:bulk",
            "job_keep_result": 60,
            "job_retention": 600,
        }
    )
    if redis_url:
        settings = settings.model_copy(update={"redis_url": RedisDsn(redis_url)})
    return settings


async def cleanup(run: Run) -> None:
    """Delete the run's prefix, and arq's keys of its jobs (arq's keys carry no queue name)."""
    async with Redis.from_url(str(run.settings.redis_url)) as redis:
        async for key in redis.scan_iter(match=f"{run.prefix}:*", count=1000):
            if await redis.type(key) == b"zset":  # a queue: jobs never run
                run.job_ids.extend(member.decode() for member in await redis.zrange(key, 0, -1))
            await redis.delete(key)
        kinds = ("job", "result", "retry", "in-progress")
        for start in range(0, len(run.job_ids), 500):
            chunk = run.job_ids[start : start + 500]
            await redis.delete(*(f"arq:{kind}:{job_id}" for job_id in chunk for kind in kinds))


def percentile(samples: Sequence[float], share: float) -> float:
    """The `share` (0-1) percentile of `samples`, by the nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, first column left-aligned, the others right-aligned."""
    cells = [list(header)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title]
    for row in cells:
        first, *rest = row
        lines.append(
            first.ljust(widths[0] + 2)
            + "".join(cell.rjust(width + 2) for cell, width in zip(rest, widths[1:], strict=True))
        )
    return "\n".join(lines)
