"""arq's WorkerSettings, one per queue, built from the shared Settings and the task registry.

    arq {{ cookiecutter.package_name }}.worker.settings.WorkerSettings       short jobs (default queue)
    arq {{ cookiecutter.package_name }}.worker.settings.BulkWorkerSettings   long jobs (bulk queue)

Keeping long tasks on workers of their own keeps the default queue's crash recovery short: arq
re-runs a crashed worker's job only after the longest timeout among that worker's tasks + 10 s.
"""

from typing import Any, Final

from arq import func

from ..queue.arq import redis_settings
from ..settings import Settings
from ..tasks import TASKS, QueueKey
{%- if cookiecutter.use_cron %}
from .cron import CRON_JOBS
{%- endif %}
from .lifecycle import shutdown, startup
from .runner import job_function


def worker_settings(settings: Settings, queue: QueueKey = "default") -> dict[str, Any]:
    """The keyword arguments of `arq.Worker` for one queue's workers."""
    queue_name = settings.queue_for(queue)
    return {
        "functions": [
            func(
                job_function(task),
                name=task.name,
                timeout=task.timeout,
                max_tries=task.max_tries,
                keep_result=task.keep_result,
            )
            for task in TASKS.values()
            if task.queue == queue
        ],
{%- if cookiecutter.use_cron %}
        # Cron runs on the default queue's workers only: one schedule, not one per queue.
        "cron_jobs": CRON_JOBS if queue == "default" else [],
{%- endif %}
        "redis_settings": redis_settings(settings),
        "queue_name": queue_name,
        "max_jobs": (
            settings.worker_max_jobs if queue == "default" else settings.bulk_worker_max_jobs
        ),
        "poll_delay": settings.worker_poll_delay,
        "job_timeout": settings.job_timeout,
        "max_tries": settings.job_max_tries,
        "keep_result": settings.job_keep_result,
        # On SIGTERM: take no new jobs, let running ones finish this long, then re-queue them.
        "job_completion_wait": settings.job_completion_wait,
        "handle_signals": True,
        "allow_abort_jobs": True,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings, "queue": queue, "queue_name": queue_name},
    }


# `arq` accepts a dict as well as a class; these are read from the environment at start-up.
WorkerSettings: Final = worker_settings(Settings())
BulkWorkerSettings: Final = worker_settings(Settings(), "bulk")
