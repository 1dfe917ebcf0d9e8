"""Sharding by queue without servers: the settings that name the bulk queue's Redis, and how the
pages of two stores merge (tests/integration/test_shards.py runs the real thing)."""

import random
from collections.abc import Awaitable, Callable

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.queue import JobPage, JobRecord, JobState
from {{ cookiecutter.package_name }}.queue.shards import BULK_ID_PREFIX, merge_pages, queue_of_id, split
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.worker.options import worker_options


def test_the_bulk_queue_s_workers_connect_to_its_own_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", "sentinel:26379")
    settings = Settings(
        _env_file=None, redis_url="redis://main:6379/0", bulk_redis_url="redis://bulk:6380/2"
    )
    bulk = worker_options(settings, "bulk")
    default = worker_options(settings, "default")
    assert (bulk["redis_settings"].host, bulk["redis_settings"].port) == ("bulk", 6380)
    assert bulk["redis_settings"].database == 2
    assert bulk["ctx"]["settings"].redis_sentinels is None  # reached by its URL
    assert str(bulk["ctx"]["settings"].redis_url) == "redis://bulk:6380/2"
    assert default["ctx"]["settings"] is settings


def test_an_empty_bulk_redis_url_is_unset_and_one_equal_to_redis_url_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BULK_REDIS_URL", "")  # as compose and the ConfigMap pass "not set"
    settings = Settings(_env_file=None)
    assert settings.bulk_redis_url is None
    assert settings.with_queue_redis("bulk") is settings
    with pytest.raises(ValidationError, match="BULK_REDIS_URL is REDIS_URL"):
        Settings(_env_file=None, redis_url="redis://r:6379/0", bulk_redis_url="redis://r:6379/0")


def test_a_job_id_names_its_queue_s_server() -> None:
    assert queue_of_id(f"{BULK_ID_PREFIX}0123") == "bulk"
    assert queue_of_id("0123") == "default"
    assert queue_of_id("bulkier") == "default"


def record(job_id: str) -> JobRecord:
    return JobRecord(id=job_id, task="t", state=JobState.SUCCEEDED, tries=1)


class Store:
    """A store's listing as queue.ledger reads it: newest first by position, `before` exclusive,
    at most `scan` entries read per page (a rare state's page may come back short)."""

    def __init__(
        self, positions: list[float], scan: int = 1000, hidden: frozenset[float] = frozenset()
    ) -> None:
        self.positions = sorted(positions, reverse=True)
        self.scan = scan
        self.hidden = hidden  # entries that do not match the page's filter

    def page(self, limit: int, before: float | None) -> JobPage:
        found: list[float] = []
        cursor = before
        older = [p for p in self.positions if before is None or p < before]
        for examined, position in enumerate(older):
            if examined == self.scan:
                return JobPage([record(str(p)) for p in found], cursor, found)
            cursor = position
            if position in self.hidden:
                continue
            found.append(position)
            if len(found) == limit:
                return JobPage([record(str(p)) for p in found], cursor, found)
        return JobPage([record(str(p)) for p in found], None, found)


@pytest.mark.parametrize("seed", range(40))
def test_merged_pages_list_every_job_once_newest_first(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible cases, not secrets
    everything = rng.sample(range(1, 10_000), rng.randint(0, 60))
    split_at = rng.randint(0, len(everything))
    hidden = set(rng.sample(everything, len(everything) // 3)) if seed % 2 else set()
    scan = rng.choice([3, 7, 1000])
    stores = [
        Store([float(p) for p in everything[:split_at]], scan, frozenset(map(float, hidden))),
        Store([float(p) for p in everything[split_at:]], scan, frozenset(map(float, hidden))),
    ]
    limit = rng.choice([1, 2, 5, 100])
    listed: list[float] = []
    before = None
    for _ in range(1000):
        page = merge_pages([store.page(limit, before) for store in stores], limit)
        assert len(page.jobs) <= limit
        listed += page.positions
        if page.next_before is None:
            break
        before = page.next_before
    expected = sorted((float(p) for p in everything if p not in hidden), reverse=True)
    assert listed == expected


@pytest.mark.parametrize("seed", range(40))
async def test_the_split_of_an_offset_between_two_lists_is_the_merged_one(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible cases, not secrets
    times = rng.sample(range(100_000), rng.randint(0, 80))
    cut = rng.randint(0, len(times))
    first = sorted(times[:cut], reverse=True)
    second = sorted(times[cut:], reverse=True)
    reads = 0

    def reader(items: list[int]) -> Callable[[int], Awaitable[float | None]]:
        async def at(rank: int) -> float | None:
            nonlocal reads
            reads += 1
            return float(items[rank]) if rank < len(items) else None

        return at

    merged = sorted(times, reverse=True)
    for offset in range(len(times) + 1):
        taken = await split(offset, len(first), len(second), reader(first), reader(second))
        assert sorted(first[:taken] + second[: offset - taken], reverse=True) == merged[:offset]
    assert reads <= 2 * (len(times) + 1) * max(1, len(times)).bit_length()
