"""Keep job arguments out of the worker's log.

arq logs every job start as `<delay> → <id>:<task>(<arguments>)`, and arguments carry what clients
sent (e-mail addresses, tokens, documents). This filter keeps the line and replaces the arguments
with `…`, unless LOG_JOB_ARGUMENTS is on; then it still replaces the values of the fields a task
marks for redaction. Results are not logged at all (`log_results=False`).
"""

import logging
import re
from collections.abc import Mapping

import httpx

from ..queue.base import JOB_META
from ..tasks import TASKS, Task
from ..tasks.registry import REDACTED, redacted_fields

JOB_START = "%6.2fs → %s(%s)%s"  # arq 0.28's format of the job start line

# One `name=<repr>` of arq's argument list: a quoted repr (up to its closing quote, or to the end
# when arq cut the line short), or anything else up to the next argument.
VALUE = r"""(?:'(?:[^'\\]|\\.)*(?:'|$)|"(?:[^"\\]|\\.)*(?:"|$)|[^,]*)"""


# The job's meta as arq shows it: a dict's repr, its texts quoted (up to its closing brace, or to
# the end when arq cut the line short).
META = r"""\{(?:'(?:[^'\\]|\\.)*(?:'|$)|"(?:[^"\\]|\\.)*(?:"|$)|[^'"}])*(?:\}|$)"""


class HideJobArguments(logging.Filter):
    def __init__(self, *, redacted_only: bool = False, tasks: Mapping[str, Task] = TASKS) -> None:
        super().__init__()
        self.redacted_only = redacted_only
        self.tasks = tasks

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == JOB_START and isinstance(record.args, tuple) and len(record.args) == 4:
            delay, ref, arguments, extra = record.args
            shown = self.redact(str(ref), str(arguments)) if self.redacted_only else "…"
            record.args = (delay, ref, shown, extra)
        return True

    def redact(self, ref: str, arguments: str) -> str:
        task = self.tasks.get(ref.rpartition(":")[2])
        if task is None:
            return "…"  # not a task of ours: nothing says which values are secret
        for name in redacted_fields(task):
            pattern = rf"(?<![\w]){re.escape(name)}={VALUE}"
            arguments = re.sub(pattern, f"{name}='{REDACTED}'", arguments)
        # The job's meta may hold its client's callback URL: a dict of texts, shown as `…`.
        return re.sub(rf"(?<![\w]){JOB_META}={META}", f"{JOB_META}=…", arguments)


class HideUrlPaths(logging.Filter):
    """httpx logs each request's URL whole: its path or query may carry a token (a webhook
    receiver's, a URL a client gave check_url). Logged as its origin and `/...`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) > 1:
            url = record.args[1]
            if isinstance(url, httpx.URL) and (url.query or url.path not in ("", "/")):
                shown = url.copy_with(path="/...", query=None, fragment=None)
                record.args = (record.args[0], shown, *record.args[2:])
        return True


def hide_url_paths() -> None:
    """Install HideUrlPaths on httpx's logger, once."""
    target = logging.getLogger("httpx")
    if not any(isinstance(f, HideUrlPaths) for f in target.filters):
        target.addFilter(HideUrlPaths())


def hide_job_arguments(
    logger: logging.Logger | None = None, *, redacted_only: bool = False
) -> None:
    """Install the filter on arq's worker logger, once. `redacted_only` (LOG_JOB_ARGUMENTS on)
    shows the arguments but those marked for redaction."""
    target = logger or logging.getLogger("arq.worker")
    for existing in [f for f in target.filters if isinstance(f, HideJobArguments)]:
        target.removeFilter(existing)
    target.addFilter(HideJobArguments(redacted_only=redacted_only))
