"""arq's worker settings, one set per queue, built from the shared Settings and the task registry.

    {{ cookiecutter.project_slug }} worker                 short jobs (default queue)
    {{ cookiecutter.project_slug }} worker --queue bulk    long jobs (bulk queue)

Keeping long tasks on workers of their own keeps the default queue's crash recovery short: arq
re-runs a crashed worker's job only after the longest timeout among that worker's tasks + 10 s.
"""

from dataclasses import replace
from typing import Any

from arq import func
from arq.cron import CronJob

from ..queue.arq_queue import redis_settings
from ..queue.base import JOB_META
from ..queue.serializer import deserialize, serialize
from ..settings import Settings
from ..tasks import TASKS, QueueKey, redact
from .job_wrapper import TIMEOUT_BACKSTOP as TIMEOUT_BACKSTOP  # where tests and tools look for it
from .job_wrapper import job_function, max_tries, timeout
from .lifecycle import job_started, shutdown, startup

# isort: split
# Where cron enters the code (the template's use_cron): the cron jobs of worker/cron.py, or none.
{%- if cookiecutter.use_cron %}
from .cron import CRON_JOBS as SCHEDULE
{%- else %}
SCHEDULE: list[CronJob] = []
{%- endif %}


def serialize_stored(value: Any) -> bytes:
    """The worker's serializer. A result, arq's record of a finished job (the payload with a
    success flag, "s"), carries the job's arguments too and stays readable for JOB_KEEP_RESULT:
    it gets them redacted. Values of redacted fields never leave the worker: the job itself,
    the ledger and the dead letter keep what a run and a replay need."""
    if isinstance(value, dict) and "s" in value and isinstance(value.get("k"), dict):
        # (Nor the job's meta: it may hold the client's callback URL.)
        kwargs = {name: given for name, given in value["k"].items() if name != JOB_META}
        value = {**value, "k": redact(TASKS, str(value.get("f")), kwargs)}
    return serialize(value)


def worker_options(settings: Settings, queue: QueueKey = "default") -> dict[str, Any]:
    """The keyword arguments of `arq.Worker` for one queue's workers."""
    # Everything of a queue's workers talks to that queue's Redis: the bulk queue's own server
    # with BULK_REDIS_URL (queue.shards), else REDIS_URL's.
    settings = settings.with_queue_redis(queue)
    queue_name = settings.queue_for(queue)
    # A queue's own tasks, and the service's internal ones (a job's webhook is delivered from
    # the job's own queue: tasks/deliver_webhook.py).
    tasks = [task for task in TASKS.values() if task.queue == queue or task.internal]
    for task in tasks:
        if max_tries(task, settings) < 2:
            raise ValueError(
                f"task {task.name!r}: max_tries must be at least 2, or a worker that stops "
                "mid-job (a deploy) fails the job for good"
            )
    # Cron runs on the default queue's workers only: one schedule, not one per queue. Copies:
    # arq keeps each cron job's next run on the object, so workers (or tests) in one process
    # must not share them.
    cron_jobs: list[CronJob] = [replace(job) for job in SCHEDULE] if queue == "default" else []
    return {
        "functions": [
            func(
                job_function(task),
                name=task.name,
                timeout=timeout(task, settings) + TIMEOUT_BACKSTOP,
                # One start more than the task's tries: a job whose every start was cut off
                # still reaches the job wrapper, which fails it with a dead letter.
                max_tries=max_tries(task, settings) + 1,
                keep_result=task.keep_result,
            )
            for task in tasks
        ],
        "cron_jobs": cron_jobs,
        "redis_settings": redis_settings(settings),
        "queue_name": queue_name,
        "max_jobs": (
            settings.worker_max_jobs if queue == "default" else settings.bulk_worker_max_jobs
        ),
        "poll_delay": settings.worker_poll_delay,
        "keep_result": settings.job_keep_result,
        # No pickle: jobs and results are msgpack, read the same way by the web (queue.arq_queue).
        "job_serializer": serialize_stored,
        "job_deserializer": deserialize,
        # Results may hold what the arguments held; neither is logged (see worker.log_redaction).
        "log_results": False,
        # On SIGTERM: take no new jobs, let running ones finish this long, then re-queue them.
        "job_completion_wait": settings.completion_wait,
        "handle_signals": True,
        "allow_abort_jobs": True,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "on_job_start": job_started,
        "ctx": {
            "settings": settings,
            "queue": queue,
            "queue_name": queue_name,
            "cron_jobs": cron_jobs,  # their next runs go into the heartbeat
        },
    }
