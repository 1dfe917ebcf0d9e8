"""Keep job arguments out of the worker's log.

arq logs every job start as `<delay> → <id>:<task>(<arguments>)`, and arguments carry what clients
sent (e-mail addresses, tokens, documents). This filter keeps the line and replaces the arguments
with `…`, unless LOG_JOB_ARGUMENTS is on. Results are not logged at all (`log_results=False`).
"""

import logging

JOB_START = "%6.2fs → %s(%s)%s"  # arq 0.28's format of the job start line


class HideJobArguments(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == JOB_START and isinstance(record.args, tuple) and len(record.args) == 4:
            delay, ref, _arguments, extra = record.args
            record.args = (delay, ref, "…", extra)
        return True


def hide_job_arguments(logger: logging.Logger | None = None) -> None:
    """Install the filter on arq's worker logger, once."""
    target = logger or logging.getLogger("arq.worker")
    if not any(isinstance(existing, HideJobArguments) for existing in target.filters):
        target.addFilter(HideJobArguments())
