"""Each queue's worker serves exactly the tasks the registry routes to it, tuned from Settings."""

from dataclasses import replace
from typing import get_args

import pytest

from {{ cookiecutter.package_name }}.queue.serializer import deserialize, serialize
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import TASKS, QueueKey
from {{ cookiecutter.package_name }}.worker import options as worker_module
from {{ cookiecutter.package_name }}.worker.job_wrapper import max_tries, timeout
from {{ cookiecutter.package_name }}.worker.options import (
    TIMEOUT_BACKSTOP,
    serialize_stored,
    worker_options,
)


def test_every_task_the_web_can_enqueue_is_served_on_its_queue(settings: Settings) -> None:
    served: dict[str, set[str]] = {}
    for key in get_args(QueueKey):
        options = worker_options(settings, key)
        for function in options["functions"]:
            served.setdefault(function.name, set()).add(options["queue_name"])

    # The web enqueues a task on settings.queue_for(task.queue): a worker of that queue, and only
    # of that one, serves it. The service's own tasks (a job's webhook delivery, queued on the
    # job's own queue) are served on every queue.
    every = {settings.queue_for(key) for key in get_args(QueueKey)}
    assert served == {
        name: every if task.internal else {settings.queue_for(task.queue)}
        for name, task in TASKS.items()
    }
    assert [name for name, task in TASKS.items() if task.internal] == ["deliver_webhook"]


def test_the_two_queues_are_distinct(settings: Settings) -> None:
    assert settings.queue_for("default") != settings.queue_for("bulk")
    bulk = worker_options(settings, "bulk")
    assert worker_options(settings)["queue_name"] != bulk["queue_name"]


def test_task_limits_come_from_the_registry(settings: Settings) -> None:
    functions = [
        function
        for key in get_args(QueueKey)
        for function in worker_options(settings, key)["functions"]
    ]

    for function in functions:
        task = TASKS[function.name]
        # arq's deadline is a backstop just behind the job wrapper's, which can retry a timeout.
        assert function.timeout_s == timeout(task, settings) + TIMEOUT_BACKSTOP
        # One start more than the task's tries, so the job wrapper records a job lost to crashes.
        assert function.max_tries == max_tries(task, settings) + 1
        assert function.keep_result_s == task.keep_result


def test_tasks_without_their_own_limits_take_their_queues(settings: Settings) -> None:
    assert timeout(TASKS["word_count"], settings) == settings.job_timeout
    assert timeout(TASKS["render_report"], settings) == settings.bulk_job_timeout
    assert max_tries(TASKS["word_count"], settings) == settings.job_max_tries


def test_a_task_with_a_single_try_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fragile = replace(TASKS["word_count"], max_tries=1)
    monkeypatch.setitem(worker_module.__dict__, "TASKS", {**TASKS, "word_count": fragile})

    with pytest.raises(ValueError, match="'word_count': max_tries must be at least 2"):
        worker_options(settings)


def test_jobs_and_results_are_never_pickled(settings: Settings) -> None:
    for options in (worker_options(settings), worker_options(settings, "bulk")):
        assert options["job_serializer"] is serialize_stored  # msgpack (serialize), see below
        assert options["job_deserializer"] is deserialize
        assert options["log_results"] is False


def test_a_result_arq_keeps_has_redacted_arguments_and_a_job_keeps_its_own() -> None:
    kwargs = {"url": "http://x.test/", "bearer_token": "t0ken-value"}
    result = {"t": 1, "f": "check_url", "a": (), "k": kwargs, "s": True, "r": None}
    job = {"t": 1, "f": "check_url", "a": (), "k": kwargs, "et": 0}

    assert deserialize(serialize_stored(result))["k"] == {**kwargs, "bearer_token": "[redacted]"}
    assert serialize_stored(job) == serialize(job)  # a job runs with what it was given


def test_tuning_comes_from_settings(settings: Settings) -> None:
    tuned = settings.model_copy(
        update={"worker_max_jobs": 7, "worker_poll_delay": 0.2, "job_completion_wait": 9}
    )

    options = worker_options(tuned)

    assert options["queue_name"] == "tests:queue"
    assert options["max_jobs"] == 7
    assert options["poll_delay"] == 0.2
    assert options["job_completion_wait"] == 9
    assert options["ctx"]["settings"] is tuned
    assert worker_options(tuned, "bulk")["max_jobs"] == tuned.bulk_worker_max_jobs


def test_the_defaults_are_not_arqs_throughput_trap() -> None:
    options = worker_options(Settings())
    # arq's 10 slots, refilled once per poll, cap I/O-bound jobs near 20 jobs/s per worker; the
    # worker refills a slot when it frees (worker.process), so the poll delay is only a fallback.
    assert options["max_jobs"] >= 50
    assert options["poll_delay"] <= 1
    # Every start counts as a try: one try would fail running jobs for good on a deploy.
    assert all(function.max_tries >= 3 for function in options["functions"])
    assert options["handle_signals"] is True
    assert options["allow_abort_jobs"] is True
