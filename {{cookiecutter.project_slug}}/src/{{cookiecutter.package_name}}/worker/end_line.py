"""A job's log lines, written once its end is on the record: off the job's way to its result.

At idle, where every line of code runs cold, a log line costs a tenth of a millisecond or more, and
a job writes three or more (arq's start `→`, the task's own, arq's success `←`) before its end's
write leaves: a tenth of its latency. So the worker holds a job's lines for its own output (the
handler `configure_logging` installs, wrapped by `HoldJobLines`) and writes them, in order and
unchanged (their time is still the moment they were logged, in JSON lines; the message is
rendered then, so it says what its arguments were), right after the write that stores the job's
end. A line waits about HOLD_LIMIT, 1.5 x HOLD_LIMIT at most: a thread of its own writes the lines
of a job that runs longer, even one that blocks the event loop (its start line shows which job
did); the thread sleeps, woken by no timer, while no job holds a line (PARK_AFTER), so an idle
worker's costs nothing. A line with an exception or a stack is not held: it goes out at once,
after the lines held before it. Other handlers of the root logger (a test's capture, one of
yours) get each line at once.

The success line is held further, for every handler (`HoldEndLine`): it is written only once the
end is stored, and a job whose end is never written (its worker stopped or killed before) leaves
no line saying it succeeded. A worker killed outright loses the lines it held (HOLD_LIMIT's worth).
"""

import logging
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from ..logs import keep_context

JOB_SUCCESS = "%6.2fs ← %s ● %s"  # arq 0.28's format of the success line

HOLD_LIMIT = 0.5
"""Seconds a job's line waits for the job's end at most."""


@dataclass(eq=False)
class JobLines:
    """The lines one job holds: for the worker's output, and its success line for all."""

    lines: list[logging.LogRecord] = field(default_factory=list)
    ends: list[logging.LogRecord] = field(default_factory=list)
    handler: "HoldJobLines | None" = None  # (where its lines go, once the first is held)
    closed: bool = False  # its end is written (or the job is over): lines go out at once


HELD: ContextVar[JobLines | None] = ContextVar("held_job_lines", default=None)
"""Set in the task that runs a job (and so in the tasks arq starts from it)."""

_LOCK = threading.RLock()  # the held lines: appended by the loop, written by either thread
_OPEN: set[JobLines] = set()  # jobs with lines held, for the thread


class HoldEndLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        held = HELD.get()
        if held is not None and not held.closed and record.msg == JOB_SUCCESS:
            prepare(record)
            held.ends.append(record)
            return False
        return True


class HoldJobLines(logging.Handler):
    """The worker's own output handler (`inner`), holding the lines logged inside a job."""

    def __init__(self, inner: logging.Handler) -> None:
        super().__init__()
        self.inner = inner
        self.set_name(inner.get_name())  # (configure_logging replaces it by this name)

    def handle(self, record: logging.LogRecord) -> bool:
        held = HELD.get()
        if held is not None and not held.closed:
            with _LOCK:
                if held.closed:
                    pass
                elif record.exc_info or record.stack_info:
                    _write(held, close=False)  # (in order: what it held first)
                else:
                    prepare(record)
                    held.handler = self
                    held.lines.append(record)
                    _OPEN.add(held)
                    if not AWAKE.is_set():
                        AWAKE.set()  # (the thread parked: see _watch)
                    return True
        return bool(self.inner.handle(record))

    def emit(self, record: logging.LogRecord) -> None:  # (handle() passes every record on)
        self.inner.emit(record)


def prepare(record: logging.LogRecord) -> None:
    """What a record held to be written later, maybe from the other thread, needs: its message
    rendered now (its arguments may change, or not render off the loop) and the job's fields
    (bound in this context)."""
    record.msg = record.getMessage()
    record.args = None
    keep_context(record)


def _write(held: JobLines, close: bool) -> None:
    """Write what `held` holds, in order (under _LOCK: the other thread writes none between)."""
    if close:
        held.closed = True
    _OPEN.discard(held)
    lines = held.lines[:]
    held.lines.clear()
    if held.handler is not None:
        for record in lines:
            held.handler.inner.handle(record)


PARK_AFTER = 8
"""Looks in a row that find no job holding lines before the thread parks: an idle worker's
thread wakes for nothing (its CPU at idle), a busy one's is never woken by a job's line."""

AWAKE = threading.Event()
"""Set while the thread looks every HOLD_LIMIT / 2; cleared (under _LOCK) while it is parked,
until a job holds a line."""
AWAKE.set()


def _watch() -> None:
    """Write the lines that have waited HOLD_LIMIT: a long job's, or one blocking the loop."""
    empty = 0
    while True:
        time.sleep(HOLD_LIMIT / 2)
        now = time.time()
        try:
            with _LOCK:
                for held in list(_OPEN):
                    if held.lines and now - held.lines[0].created >= HOLD_LIMIT:
                        _write(held, close=False)
                empty = 0 if _OPEN else empty + 1
                if empty >= PARK_AFTER:
                    AWAKE.clear()
                    empty = 0
            AWAKE.wait()  # (at once unless parked: until a job holds a line, HoldJobLines)
        except Exception:  # (logging reports a handler's own errors): never end the thread
            logging.getLogger(__name__).exception("could not write held log lines")


_watcher: threading.Thread | None = None


def hold_end_lines(logger: logging.Logger | None = None) -> None:
    """Install the filter on arq's worker logger and the holder on the root logger's output
    handler (configure_logging's), once; start the thread that writes lines that waited."""
    global _watcher  # (one thread per process)
    target = logger or logging.getLogger("arq.worker")
    if not any(isinstance(f, HoldEndLine) for f in target.filters):
        target.addFilter(HoldEndLine())
    root = logging.getLogger()
    root.handlers = [
        h if isinstance(h, HoldJobLines) or h.get_name() != "structlog" else HoldJobLines(h)
        for h in root.handlers
    ]
    if _watcher is None:
        _watcher = threading.Thread(target=_watch, name="held-log-lines", daemon=True)
        _watcher.start()


def hold_job_lines() -> JobLines:
    """Hold the lines of the job this task runs (set in its task, before arq's run_job)."""
    held = JobLines()
    HELD.set(held)
    return held


def write_held(ends: bool = True) -> None:
    """Write the lines this job holds: its end is stored (`ends`: its success line too), or the
    job is over. (arq writes the end in a task of its own, shielded from the job's cancel, whose
    context holds the same JobLines.)"""
    held = HELD.get()
    if held is None:
        return
    with _LOCK:
        _write(held, close=True)
    if not ends:
        return
    records = held.ends[:]
    held.ends.clear()
    for record in records:
        logging.getLogger(record.name).handle(record)
