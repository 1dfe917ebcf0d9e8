"""How long an idle worker waits for its fallback poll (worker.process.IDLE_STRETCH): stretched
while it finds nothing, never without its wake listener, never past its next cron run. The
waits themselves are measured on real Redis in tests/integration/test_wake.py."""

from datetime import datetime, timedelta
from typing import Any

import pytest
from arq.cron import cron

from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import IDLE_STRETCH, WakingWorker


async def nothing(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> None:
    """A cron job's function (never run here)."""


@pytest.fixture
async def worker(settings: Settings) -> WakingWorker:
    """A worker polling every 0.5 s, idle for many polls, listening for notices (not started:
    nothing here talks to Redis; made in the test's event loop, which arq's Worker takes)."""
    options = {**worker_options(settings), "poll_delay": 0.5, "handle_signals": False}
    idle = WakingWorker(**options)
    idle.cron_jobs = []
    idle._listening = True
    idle._idle_polls = 10
    return idle


def test_an_idle_worker_stretches_its_poll_up_to_the_limit(worker: WakingWorker) -> None:
    assert worker._fallback_delay() == 0.5 * IDLE_STRETCH
    worker._idle_polls = 2
    assert worker._fallback_delay() == 1.0  # doubling on the way


def test_a_notice_ends_the_stretch(worker: WakingWorker) -> None:
    worker._notice()
    assert worker._fallback_delay() == 0.5


def test_without_its_wake_listener_a_worker_never_stretches(worker: WakingWorker) -> None:
    worker._listening = False  # notices could not reach it: the poll is all it has
    assert worker._fallback_delay() == 0.5


def test_the_stretch_ends_before_the_next_cron_run(worker: WakingWorker) -> None:
    job = cron(nothing, second=0)
    job.next_run = datetime.now(tz=worker.timezone) + timedelta(seconds=2)
    worker.cron_jobs = [job]
    # arq queues a cron job in the poll that comes within 1 s of its time: poll by then.
    assert 0.5 <= worker._fallback_delay() <= 1.0
    job.next_run = datetime.now(tz=worker.timezone) + timedelta(minutes=5)
    assert worker._fallback_delay() == 0.5 * IDLE_STRETCH
