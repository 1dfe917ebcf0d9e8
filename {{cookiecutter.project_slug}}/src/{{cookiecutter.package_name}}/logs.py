"""Structured logs for web and worker: JSON lines when the output is not a terminal (containers,
log shippers), readable lines in a terminal.

Every line, ours or a library's (arq, uvicorn), goes through one structlog formatter on the root
logger, so the context bound with `structlog.contextvars` appears on all of them: the request id of
a web request, and job_id, task, try, queue and request_id of a job (see worker.job_wrapper).
"""

import json
import logging
import math
import sys
import time
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor

LogFormat = Literal["auto", "json", "console"]

# Libraries that install handlers of their own: their lines go through ours instead.
LIBRARY_LOGGERS = ("arq", "arq.worker", "uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(
    level: str = "INFO", log_format: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Route all logging through structlog's formatter, to `stream` (stderr by default).
    Calling it again reconfigures."""
    out = stream or sys.stderr
    as_json = log_format == "json" or (log_format == "auto" and not out.isatty())
    shared: list[Processor] = [
        merge_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if as_json:  # a traceback becomes one "exception" field of the JSON line
        rendering += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        rendering.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    formatter: logging.Formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=rendering
    )
    if as_json:
        formatter = JsonLines(formatter)
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.set_name("structlog")
    # No line shows a record's asyncio task: not looked up for each one (the logging HOWTO's
    # "Optimization"; Python 3.12+, not in typeshed). A worker logs a few lines a job.
    setattr(logging, "logAsyncioTasks", False)  # noqa: B010
    root = logging.getLogger()
    # Replace our own handler on a second call; leave others (a test's log capture) in place.
    root.handlers = [h for h in root.handlers if h.get_name() != "structlog"] + [handler]
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        if not library.handlers and not library.propagate:
            continue  # switched off on purpose: uvicorn's --no-access-log leaves it so
        library.handlers = []
        library.propagate = True
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


class JsonLines(logging.Formatter):
    """The JSON line of a plain logging call, written directly: the same fields as structlog's
    chain gives it (the bound context, event, level, logger, timestamp), at a fraction of the
    cost. A worker logs a few lines per job (arq's start and end, the task's own), and through
    the full chain those cost more than the rest of the job's bookkeeping. Lines with an
    exception or a stack, and structlog's own events, take the full chain (`fallback`)."""

    def __init__(self, fallback: logging.Formatter) -> None:
        super().__init__()
        self.fallback = fallback
        self._second: tuple[int, str] = (-1, "")  # the last second written, as text

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info or isinstance(record.msg, dict):
            return self.fallback.format(record)
        line = getattr(record, CONTEXT, None) or structlog.contextvars.get_contextvars()
        line["event"] = record.getMessage()
        line["level"] = record.levelname.lower()
        line["logger"] = record.name
        line["timestamp"] = self.timestamp(record.created)
        return ENCODE(line)

    def timestamp(self, created: float) -> str:
        """ISO 8601 in UTC, to the microsecond, as structlog's chain writes it: the date and time
        of day built once a second, not a datetime for every line."""
        second = math.floor(created)
        last, text = self._second
        if second != last:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{int((created - second) * 1_000_000):06d}Z"


CONTEXT = "bound_context"
"""A record's attribute: the context bound where it was logged, for a record written later or
from another thread (worker.end_line), where the context is another."""


def keep_context(record: logging.LogRecord) -> None:
    """Take down the context bound now on `record` (its fields, whenever it is written)."""
    setattr(record, CONTEXT, structlog.contextvars.get_contextvars())


def merge_context(logger: Any, method: str, event: EventDict) -> EventDict:
    """structlog's merge_contextvars, with a record's kept context (keep_context) first."""
    record = event.get("_record")
    kept = getattr(record, CONTEXT, None) if record is not None else None
    if kept is None:
        return structlog.contextvars.merge_contextvars(logger, method, event)
    for key, value in kept.items():
        event.setdefault(key, value)
    return event


ENCODE = json.JSONEncoder(default=repr).encode
"""json.dumps(line, default=repr), its encoder built once (json.dumps builds one per call when
given `default`)."""
