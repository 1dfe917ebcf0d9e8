"""Each queue's worker serves exactly the tasks the registry routes to it, tuned from Settings."""

from typing import get_args

from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import TASKS, QueueKey
from {{ cookiecutter.package_name }}.worker.settings import (
    BulkWorkerSettings,
    WorkerSettings,
    worker_settings,
)


def test_every_task_the_web_can_enqueue_is_served_on_its_queue(settings: Settings) -> None:
    served = {}
    for key in get_args(QueueKey):
        options = worker_settings(settings, key)
        for function in options["functions"]:
            assert function.name not in served, f"{function.name} is served by two queues"
            served[function.name] = options["queue_name"]

    # The web enqueues a task on settings.queue_for(task.queue): a worker of that queue serves it.
    assert served == {name: settings.queue_for(task.queue) for name, task in TASKS.items()}


def test_the_two_queues_are_distinct(settings: Settings) -> None:
    assert settings.queue_for("default") != settings.queue_for("bulk")
    assert WorkerSettings["queue_name"] != BulkWorkerSettings["queue_name"]


def test_task_limits_come_from_the_registry(settings: Settings) -> None:
    functions = [
        function
        for key in get_args(QueueKey)
        for function in worker_settings(settings, key)["functions"]
    ]

    for function in functions:
        task = TASKS[function.name]
        assert function.timeout_s == task.timeout
        assert function.max_tries == task.max_tries
        assert function.keep_result_s == task.keep_result


def test_tuning_comes_from_settings(settings: Settings) -> None:
    tuned = settings.model_copy(
        update={"worker_max_jobs": 7, "worker_poll_delay": 0.2, "job_completion_wait": 9}
    )

    options = worker_settings(tuned)

    assert options["queue_name"] == "tests:queue"
    assert options["max_jobs"] == 7
    assert options["poll_delay"] == 0.2
    assert options["job_completion_wait"] == 9
    assert options["ctx"]["settings"] is tuned
    assert worker_settings(tuned, "bulk")["max_jobs"] == tuned.bulk_worker_max_jobs


def test_the_defaults_are_not_arqs_throughput_trap() -> None:
    # arq's 10 jobs / 0.5 s poll caps I/O-bound jobs near 20 jobs/s per worker.
    assert WorkerSettings["max_jobs"] >= 50
    assert WorkerSettings["poll_delay"] <= 0.1
    # Every start counts as a try: one try would fail running jobs for good on a deploy.
    assert WorkerSettings["max_tries"] >= 2
    assert WorkerSettings["handle_signals"] is True
    assert WorkerSettings["allow_abort_jobs"] is True
