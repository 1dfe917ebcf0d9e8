"""The tasks this service runs: one module per task, declared once in TASKS.

To add a task: write `tasks/<name>.py` with an argument model, the function and its `TASK`, then
list it below. The worker serves it and the web accepts it from then on.
"""

from collections.abc import Mapping
from types import MappingProxyType

from ..settings import QueueKey
from . import check_url, deliver_webhook, {% if cookiecutter.database == "postgres" %}index_document, {% endif %}render_report, word_count, word_total
from .registry import (
    Context,
    Rate,
    RetryPolicy,
    Task,
    UnknownTaskError,
    prepare,
    quoted_forms,
    redact,
    scrub,
    secrets_of,
)

TASKS: Mapping[str, Task] = MappingProxyType(
    {
        task.name: task
        for task in (
            word_count.TASK,
            word_total.TASK,
            check_url.TASK,
            render_report.TASK,
            deliver_webhook.TASK,
{%- if cookiecutter.database == "postgres" %}
            index_document.TASK,
{%- endif %}
        )
    }
)

__all__ = [
    "TASKS",
    "Context",
    "QueueKey",
    "Rate",
    "RetryPolicy",
    "Task",
    "UnknownTaskError",
    "prepare",
    "quoted_forms",
    "redact",
    "scrub",
    "secrets_of",
]
