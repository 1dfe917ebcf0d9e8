"""Redis outages in the fast tier: the backoff, what the job wrapper does when the record cannot be
written, and what the probe reads. The real faults, on real processes, are in
tests/integration/test_outages.py."""

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from arq.worker import Retry
from redis.exceptions import (
    BusyLoadingError,
    ExecAbortError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    WatchError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from {{ cookiecutter.package_name }}.cancellation import raise_if_cancelled
from {{ cookiecutter.package_name }}.queue.arq_queue import unavailable_as_queue_error
from {{ cookiecutter.package_name }}.queue.base import JobState, QueueUnavailableError
from {{ cookiecutter.package_name }}.queue.unavailable import unavailable
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import TASKS
from {{ cookiecutter.package_name }}.worker import probe
from {{ cookiecutter.package_name }}.worker.heartbeat import key_ttl, proof_path, write_proof
from {{ cookiecutter.package_name }}.worker.job_wrapper import OUTAGE_RETRY_DELAY, job_function
from {{ cookiecutter.package_name }}.worker.outage import BACKOFF_CAP, Backoff, persist

from .fake_queue import FakeQueue


def test_the_backoff_doubles_with_jitter_up_to_its_cap_and_starts_over() -> None:
    backoff = Backoff(first=0.5, cap=BACKOFF_CAP)
    delays = [backoff.failed() for _ in range(8)]
    ceilings = [0.5, 1, 2, 4, 5, 5, 5, 5]

    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    lasted = backoff.succeeded()
    assert lasted is not None
    assert lasted >= 0
    assert backoff.succeeded() is None  # nothing failed since
    assert backoff.failed() <= 0.5  # from the start again


class OutOfReach(FakeQueue):
    """A ledger whose Redis refuses some writes."""

    def __init__(self, refuse: set[str]) -> None:
        super().__init__()
        self.refuse = refuse

    async def started(self, *args: Any, **kwargs: Any) -> None:
        if "started" in self.refuse:
            raise RedisConnectionError("Error 111 connecting to redis:6379. Connection refused.")
        await super().started(*args, **kwargs)

    async def progress(self, *args: Any, **kwargs: Any) -> None:
        if "progress" in self.refuse:
            raise OutOfMemoryError("command not allowed when used memory > 'maxmemory'")
        await super().progress(*args, **kwargs)


async def test_a_record_redis_refuses_ends_the_try_and_the_job_runs_again(
    ctx: dict[str, Any], settings: Settings
) -> None:
    ledger = OutOfReach(refuse={"started"})
    enqueued = await ledger.enqueue("word_count", {"text": "a b"}, queue_name="tests:queue")
    # The job wrapper tries again until the job's time is nearly up: a short timeout keeps it short.
    quick = settings.model_copy(update={"job_timeout": 0.3})
    job_ctx = {
        **ctx,
        "settings": quick,
        "ledger": ledger,
        "job_id": enqueued.job_id,
        "queue_name": "tests:queue",
    }

    with pytest.raises(Retry) as retry:
        await job_function(TASKS["word_count"])(job_ctx, text="a b")

    # Not failed: arq queues it again, to run once Redis takes writes.
    assert retry.value.defer_score == OUTAGE_RETRY_DELAY * 1000
    assert ledger.jobs[enqueued.job_id].record.state is JobState.QUEUED


class WrongKey(FakeQueue):
    """A ledger whose record key holds another kind of value: a bug, not an outage."""

    async def started(self, *args: Any, **kwargs: Any) -> None:
        raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")


async def test_a_record_write_redis_rejects_as_a_bug_fails_the_job_at_once(
    ctx: dict[str, Any], settings: Settings
) -> None:
    ledger = WrongKey()
    enqueued = await ledger.enqueue("word_count", {"text": "a b"}, queue_name="tests:queue")
    job_ctx = {**ctx, "ledger": ledger, "job_id": enqueued.job_id, "queue_name": "tests:queue"}
    started = time.monotonic()

    # Raised to arq, which fails the job and logs it: not waited on until the job's timeout
    # (JOB_TIMEOUT, minutes) as if Redis were away, holding a slot, then run again.
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await job_function(TASKS["word_count"])(job_ctx, text="a b")
    assert time.monotonic() - started < settings.job_timeout / 10


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (RedisConnectionError("Connection refused"), True),
        (RedisTimeoutError("Timeout reading from socket"), True),
        (TimeoutError(), True),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'"), True),
        (ReadOnlyError("You can't write against a read only replica."), True),
        (BusyLoadingError("Redis is loading the dataset in memory"), True),
        (WatchError("Watched variable changed."), True),
        (ResponseError("MISCONF Redis is configured to save RDB snapshots"), True),
        # What arq's claim of a job meets in a full Redis (its transaction, refused at EXEC).
        (ExecAbortError("Transaction discarded because of: OOM command not allowed"), True),
        (ExecAbortError("Transaction discarded because of previous errors."), False),
        (ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
        (ResponseError("ERR value is out of range"), False),
    ],
    ids=repr,
)
async def test_an_outage_is_waited_out_and_a_bug_raised_at_once_by_web_and_worker_alike(
    error: Exception, outage: bool
) -> None:
    """One classification (queue.unavailable) for the web's 503 and the worker's waiting."""
    calls = 0

    async def write() -> None:
        nonlocal calls
        calls += 1
        raise error

    assert unavailable(error) is outage
    if outage:
        with pytest.raises(QueueUnavailableError), unavailable_as_queue_error():
            raise error
    else:
        with pytest.raises(type(error)), unavailable_as_queue_error():
            raise error
        with pytest.raises(type(error)):
            await persist(write, "write")  # not tried again and again: raised at once
        assert calls == 1


async def test_progress_redis_refuses_is_dropped_and_the_job_goes_on(ctx: dict[str, Any]) -> None:
    ledger = OutOfReach(refuse={"progress"})
    args = {"pages": 2, "seconds_per_page": 0}
    enqueued = await ledger.enqueue("render_report", args, queue_name="tests:bulk")
    job_ctx = {**ctx, "ledger": ledger, "job_id": enqueued.job_id, "queue_name": "tests:bulk"}

    result = await job_function(TASKS["render_report"])(job_ctx, **args)

    record = ledger.jobs[enqueued.job_id].record
    assert (result, record.state, record.progress) == ({"pages": 2}, JobState.SUCCEEDED, None)


@pytest.fixture
def proof_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    return tmp_path


def run_probe(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    monkeypatch.setenv("QUEUE_NAME", settings.queue_name)
    monkeypatch.setenv("BULK_QUEUE_NAME", settings.bulk_queue_name)
    monkeypatch.setenv("WORKER_ID", settings.worker_id or "")
    monkeypatch.setenv("WORKER_HEARTBEAT_INTERVAL", str(settings.worker_heartbeat_interval))
    code = probe.main([])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_the_probe_passes_for_a_worker_that_waits_for_redis_and_fails_for_a_stuck_one(
    settings: Settings,
    proof_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings.model_copy(update={"worker_id": "w1", "worker_heartbeat_interval": 2})
    proof = proof_path(settings)
    assert proof.parent == proof_dir

    missing = run_probe(settings, monkeypatch, capsys)
    write_proof(proof, None, "Error 111 connecting to redis:6379. Connection refused.")
    waiting = run_probe(settings, monkeypatch, capsys)
    write_proof(proof, time.time(), None)
    fine = run_probe(settings, monkeypatch, capsys)
    old = time.time() - key_ttl(settings) - 1
    os.utime(proof, (old, old))
    stuck = run_probe(settings, monkeypatch, capsys)

    assert missing[0] == 1
    assert "no recent heartbeat" in missing[1]
    assert waiting[0] == 0  # a restart would not bring Redis back
    assert "waiting for Redis" in waiting[1]
    assert "Connection refused" in waiting[1]
    assert fine == (0, f"healthy: {settings.queue_name}:worker:w1\n")
    assert stuck[0] == 1
    assert "stuck or gone" in stuck[1]


async def test_a_cancel_lost_on_the_way_is_still_raised_by_the_loops_check() -> None:
    """The check each long-lived worker loop makes once per turn (see cancellation.py)."""
    turns = 0

    async def loop() -> None:
        nonlocal turns
        while True:
            raise_if_cancelled()
            turns += 1
            # Lost, as Python 3.11's wait_for may lose it:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.03)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)

    assert task in done
    assert task.cancelled()
    assert turns >= 1
