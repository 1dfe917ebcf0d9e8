"""Redis outages in the fast tier: the backoff, what the runner does when the record cannot be
written, and what the probe reads. The real faults, on real processes, are in
tests/integration/test_outages.py."""

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from arq.worker import Retry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError

from {{ cookiecutter.package_name }}.queue.base import JobState
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import TASKS
from {{ cookiecutter.package_name }}.worker import probe
from {{ cookiecutter.package_name }}.worker.heartbeat import key_ttl, proof_path, write_proof
from {{ cookiecutter.package_name }}.worker.outage import BACKOFF_CAP, Backoff
from {{ cookiecutter.package_name }}.worker.runner import OUTAGE_RETRY_DELAY, job_function

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
    enqueued = await ledger.enqueue("word_count", {"text": "a b"}, queue="tests:queue")
    # The runner tries again until the job's time is nearly up: a short timeout keeps this short.
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


async def test_progress_redis_refuses_is_dropped_and_the_job_goes_on(ctx: dict[str, Any]) -> None:
    ledger = OutOfReach(refuse={"progress"})
    args = {"pages": 2, "seconds_per_page": 0}
    enqueued = await ledger.enqueue("render_report", args, queue="tests:bulk")
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
