"""The worker serves exactly the registry's tasks, with the tuning from Settings."""

from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import TASKS
from {{ cookiecutter.package_name }}.worker.settings import WorkerSettings, worker_settings


def test_every_task_the_web_accepts_is_served_by_the_worker(settings: Settings) -> None:
    served = {function.name for function in worker_settings(settings)["functions"]}

    assert served == set(TASKS)


def test_task_timeouts_come_from_the_registry(settings: Settings) -> None:
    timeouts = {f.name: f.timeout_s for f in worker_settings(settings)["functions"]}

    assert timeouts == {name: task.timeout for name, task in TASKS.items()}


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


def test_the_defaults_are_not_arqs_throughput_trap() -> None:
    # arq's 10 jobs / 0.5 s poll caps I/O-bound jobs near 20 jobs/s per worker.
    assert WorkerSettings["max_jobs"] >= 50
    assert WorkerSettings["poll_delay"] <= 0.1
    # Every start counts as a try: one try would fail running jobs for good on a deploy.
    assert WorkerSettings["max_tries"] >= 2
    assert WorkerSettings["handle_signals"] is True
