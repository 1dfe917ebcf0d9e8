"""Where metrics enter the code: web and worker count through here, and nothing else knows
whether the project has metrics (the template's use_metrics). With metrics, these are
metrics.py's Prometheus counters and the worker's metrics server; without, stand-ins with the
same interface that do nothing. (The web's GET /metrics is web.routes.metrics, added by web.app.)
"""
{%- if cookiecutter.use_metrics %}

from .metrics import count_enqueued, metered_recorder, serve_worker_metrics

__all__ = ["count_enqueued", "metered_recorder", "serve_worker_metrics"]
{%- else %}

from collections.abc import Callable

from .queue import JobRecorder
from .settings import Settings


def count_enqueued(task: str, jobs: int = 1) -> None:
    """Nothing counts the jobs the web accepts."""


def metered_recorder(recorder: JobRecorder) -> JobRecorder:
    """The worker's recorder as it is: nothing counts starts, ends and durations."""
    return recorder


def serve_worker_metrics(settings: Settings) -> Callable[[], None] | None:
    """No metrics server: nothing to stop."""
    return None
{%- endif %}
