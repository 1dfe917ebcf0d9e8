"""arq's WorkerSettings, built from the shared Settings and the task registry."""

from typing import Any, Final, cast

from arq import func
from arq.typing import WorkerCoroutine

from ..queue.arq import redis_settings
from ..settings import Settings
from ..tasks import TASKS
{%- if cookiecutter.use_cron %}
from .cron import CRON_JOBS
{%- endif %}
from .lifecycle import shutdown, startup


def worker_settings(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of `arq.Worker` for these settings."""
    return {
        "functions": [
            func(cast("WorkerCoroutine", task.function), name=task.name, timeout=task.timeout)
            for task in TASKS.values()
        ],
{%- if cookiecutter.use_cron %}
        "cron_jobs": CRON_JOBS,
{%- endif %}
        "redis_settings": redis_settings(settings),
        "queue_name": settings.queue_name,
        "max_jobs": settings.worker_max_jobs,
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
        "ctx": {"settings": settings},
    }


# `arq` accepts a dict as well as a class; this one is read from the environment at start-up.
WorkerSettings: Final = worker_settings(Settings())
