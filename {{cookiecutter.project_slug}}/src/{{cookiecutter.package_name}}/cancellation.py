"""A cancel that Python 3.11 loses on the way, still honoured by the loops that must stop.

On Python 3.11, `asyncio.wait_for` returns the result and drops the cancel when the cancel lands
just as the awaited call completes (CPython gh-86296, fixed in 3.12). redis-py sends every command
through `wait_for` when a socket timeout is set, so a worker told to stop (SIGTERM, arq's close)
could go on polling until the platform's SIGKILL. The task still counts the request
(`Task.cancelling()`), so each long-lived loop checks it once per turn.
"""

import asyncio


def raise_if_cancelled() -> None:
    """Raise CancelledError if the running task was asked to stop and that cancel was lost."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
