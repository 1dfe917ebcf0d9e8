"""Sharding by queue without servers: the settings that name the bulk queue's Redis, and how the
pages of two stores merge (tests/integration/test_shards.py runs the real thing)."""

import heapq
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.queue import (
    JobPage,
    JobRecord,
    JobState,
    MisplacedJobError,
    NewJob,
    QueueUnavailableError,
    WorkerInfo,
)
from {{ cookiecutter.package_name }}.queue.shards import (
    BULK_ID_PREFIX,
    ShardedQueue,
    merge_pages,
    queue_of_id,
    split,
)
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.worker.options import worker_options

from .fake_queue import FakeQueue


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
    for same in ("redis://R:6379/0", "redis://r/00", "redis://user:secret@r:6379"):
        with pytest.raises(ValidationError, match="BULK_REDIS_URL names REDIS_URL's database"):
            Settings(_env_file=None, redis_url="redis://r:6379/0", bulk_redis_url=same)
    with pytest.raises(ValidationError, match="BULK_REDIS_URL names"):
        Settings(
            _env_file=None, redis_url="redis://localhost/1", bulk_redis_url="redis://127.0.0.1/1"
        )
    Settings(_env_file=None, redis_url="redis://r:6379/0", bulk_redis_url="redis://r:6379/1")
    Settings(_env_file=None, redis_url="redis://r:6379/0", bulk_redis_url="redis://s:6379/0")


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


@pytest.mark.parametrize("seed", range(60))
async def test_pages_of_two_lists_split_at_any_offset_list_each_item_once(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible cases, not secrets
    # Few distinct times in half the cases: letters of both servers that failed at one moment.
    spread = 10 if seed % 2 else 100_000
    count = rng.randint(0, 80)
    times = [rng.randrange(spread) for _ in range(count)]
    cut = rng.randint(0, count)
    # Newest first; on equal times each list keeps an order of its own (here: by name).
    first = sorted(((t, f"a{i}") for i, t in enumerate(times[:cut])), key=lambda x: (-x[0], x[1]))
    second = sorted(((t, f"b{i}") for i, t in enumerate(times[cut:])), key=lambda x: (-x[0], x[1]))
    reads = 0

    def reader(items: list[tuple[int, str]]) -> Callable[[int], Awaitable[float | None]]:
        async def at(rank: int) -> float | None:
            nonlocal reads
            reads += 1
            return float(items[rank][0]) if rank < len(items) else None

        return at

    for limit in (1, 3, 7):
        listed: list[str] = []
        for offset in range(0, count + 1, limit):
            taken = await split(offset, len(first), len(second), reader(first), reader(second))
            pages = (first[taken : taken + limit], second[offset - taken : offset - taken + limit])
            merged = heapq.merge(*pages, key=lambda item: -item[0])  # as ShardedQueue merges
            listed += [name for _, name in merged][:limit]
        assert sorted(listed) == sorted(name for _, name in first + second)  # each once
        when = {name: t for t, name in first + second}
        assert [when[name] for name in listed] == sorted(times, reverse=True)  # newest first
    assert reads <= 2 * 3 * (count + 1) * max(1, count).bit_length()


def two_fakes() -> tuple[ShardedQueue, FakeQueue, FakeQueue]:
    """A ShardedQueue over two in-memory fakes (named as such: no server here)."""
    default, bulk = FakeQueue(), FakeQueue()
    return ShardedQueue(default, bulk, "q", "b"), default, bulk


async def test_a_store_that_does_not_answer_is_named_and_hides_nothing_of_the_other() -> None:
    sharded, default, bulk = two_fakes()
    await sharded.enqueue("word_count", {"text": "x"}, queue_name="q")
    default.alive = [WorkerInfo("w1", "q", datetime.now(tz=UTC))]
    bulk.available = False

    stats = await sharded.stats()
    assert [depth.name for depth in stats.queues] == ["q"]
    assert stats.unreachable == ["b"]
    assert [info.worker_id for info in await sharded.workers()] == ["w1"]
    with pytest.raises(QueueUnavailableError):  # a listing is whole or a 503
        await sharded.dead_letters(10)
    default.available = False
    with pytest.raises(QueueUnavailableError):
        await sharded.stats()


async def test_ids_and_batches_that_cannot_live_on_one_server_are_refused() -> None:
    sharded, default, bulk = two_fakes()
    mixed = [NewJob("word_count", {}, "q"), NewJob("render_report", {}, "b")]
    with pytest.raises(MisplacedJobError):
        await sharded.enqueue("render_report", {"pages": 1}, queue_name="b", job_id="mine")
    with pytest.raises(MisplacedJobError):
        await sharded.enqueue("word_count", {}, queue_name="q", job_id=f"{BULK_ID_PREFIX}1")
    with pytest.raises(MisplacedJobError):
        await sharded.enqueue_many(mixed)
    assert default.jobs == bulk.jobs == {}
    mine = f"{BULK_ID_PREFIX}1"
    await sharded.enqueue("render_report", {"pages": 1}, queue_name="b", job_id=mine)
    assert list(bulk.jobs) == [f"{BULK_ID_PREFIX}1"]
