"""A job's success line ("←"), written once the job's end is: after the write that stores it.

arq logs a success the moment the task returns, before it writes the job's end: on the path of
every job from its task's return to its result in Redis, where at idle a log line costs a tenth
of a millisecond. The worker holds that line (`HoldEndLine`) and writes it right after the end's
write (worker.process), unchanged: its time is still the moment arq logged it (in JSON lines),
its fields the job's, and a job whose end is never written (its worker stopped or killed before)
leaves no line saying it succeeded. Other lines (a start, a failure, a retry) go out as arq logs
them.
"""

import logging
from contextvars import ContextVar

JOB_SUCCESS = "%6.2fs ← %s ● %s"  # arq 0.28's format of the success line

HELD: ContextVar[list[logging.LogRecord] | None] = ContextVar("held_end_lines", default=None)
"""Set in the task that runs a job: its success line, held until the end is written."""


class HoldEndLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        held = HELD.get()
        if held is not None and record.msg == JOB_SUCCESS:
            held.append(record)
            return False
        return True


def hold_end_lines(logger: logging.Logger | None = None) -> None:
    """Install the filter on arq's worker logger, once."""
    target = logger or logging.getLogger("arq.worker")
    if not any(isinstance(f, HoldEndLine) for f in target.filters):
        target.addFilter(HoldEndLine())


def write_held() -> None:
    """Write the lines this job holds: its end is stored. (arq writes the end in a task of its
    own, shielded from the job's cancel, whose context holds the same list.)"""
    held = HELD.get()
    if not held:
        return
    HELD.set(None)
    lines = held[:]
    held.clear()
    for record in lines:
        logging.getLogger(record.name).handle(record)
