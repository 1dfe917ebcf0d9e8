"""Group commit: concurrent calls of one Lua script share a Redis round trip.

Under load the web enqueues many jobs at once, each one script call (queue/enqueue.py). A round
trip through redis-py costs the web more CPU than the rest of the request, so the calls made in
the same turn of the event loop leave together, as one pipeline of EVALSHAs, and each caller gets
its own reply. At idle a call waits for nobody: it leaves in the next turn of the loop, alone.

With replicas to wait for (DURABLE_ENQUEUE_REPLICAS), the round trip ends with one Redis WAIT for
all its calls: each caller's answer comes once that many replicas have its write, or fails with
NotReplicatedError when they have not within the timeout.

Nothing changes for a caller but the cost. The pipeline is not a transaction: each script runs
whole or not at all on its own, so one call's error (a taken job id, a full Redis) is that call's
alone, and an answer comes only once Redis has run the call (never a 202 before the job is in
Redis). A call redis-py sends again after a timeout is sent again with the others of its
pipeline; the enqueue script recognises its own earlier execution, as it does when sent alone.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from .unavailable import NotReplicatedError

MAX_CALLS = 128
"""Calls per round trip at most; more leave in the next one (a bounded pipeline, reply and all)."""

Args = Sequence[bytes | int | str | float]


@dataclass
class _Call:
    keys: Sequence[str]
    args: Args
    reply: "asyncio.Future[Any]"


class GroupCommit:
    """Calls of `script` (its text), grouped per turn of the event loop into one round trip."""

    def __init__(
        self, redis: Redis, script: str, replicas: int = 0, replica_timeout: float = 1.0
    ) -> None:
        self._redis = redis
        self._replicas = replicas
        self._replica_timeout_ms = max(1, round(replica_timeout * 1000))
        self._script = redis.register_script(script)  # the SHA, and loading on NOSCRIPT
        self._waiting: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: Sequence[str], args: Args) -> Any:
        loop = asyncio.get_running_loop()
        call = _Call(keys, args, loop.create_future())
        self._waiting.append(call)
        if len(self._waiting) == 1:
            # After the other callbacks ready in this turn: the requests being handled now join.
            loop.call_soon(self._send_waiting)
        elif len(self._waiting) >= MAX_CALLS:
            self._send_waiting()
        return await call.reply

    def _send_waiting(self) -> None:
        calls, self._waiting = self._waiting, []
        calls = [call for call in calls if not call.reply.done()]  # a caller gone: not sent
        if not calls:
            return
        task = asyncio.create_task(self._send(calls))
        # Held until done (the loop keeps only weak references to tasks).
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[_Call]) -> None:
        try:
            if len(calls) == 1 and not self._replicas:
                replies: list[Any] = [await self._one(calls[0])]
            else:
                replies = await self._many(calls)
        except BaseException as exc:  # the round trip failed: every call of it did
            for call in calls:
                if not call.reply.done():
                    call.reply.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for call, reply in zip(calls, replies, strict=True):
            if call.reply.done():
                continue
            if isinstance(reply, Exception):
                call.reply.set_exception(reply)
            else:
                call.reply.set_result(reply)

    async def _evalsha(self, keys: Sequence[str], args: Args) -> Any:
        """The script's call (redis-py's Script, without its wrapping): EVALSHA, and the text
        once more when Redis has forgotten it (NOSCRIPT)."""
        script = self._script
        try:
            return await self._redis.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", script.sha, len(keys), *keys, *args
            )
        except NoScriptError:
            script.sha = await self._redis.script_load(script.script)
            return await self._redis.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", script.sha, len(keys), *keys, *args
            )

    async def _one(self, call: _Call) -> Any:
        try:
            return await self._evalsha(call.keys, call.args)
        except Exception as exc:  # the call's own error, e.g. a full Redis
            return exc

    async def _many(self, calls: list[_Call]) -> list[Any]:
        replies = await self._pipeline(calls)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            # A restarted or failed-over Redis: NOSCRIPT means the script did not run, so
            # those calls are sent again once it is loaded.
            self._script.sha = await self._redis.script_load(self._script.script)
            again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            try:
                resent = await self._pipeline([calls[i] for i in again])
            except Exception as exc:  # (the round trip's error is theirs, not the others')
                resent = [exc] * len(again)
            for i, reply in zip(again, resent, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                words: list[Any] = [*call.keys, *call.args]
                pipe.evalsha(self._script.sha, len(call.keys), *words)
            if self._replicas:
                pipe.execute_command("WAIT", self._replicas, self._replica_timeout_ms)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        if self._replicas:
            replies = replicated(replies, self._replicas, self._replica_timeout_ms)
        return replies


def replicated(replies: list[Any], wanted: int, timeout_ms: int) -> list[Any]:
    """The replies of a pipeline that ended with WAIT, without it: a write that fewer replicas
    than `wanted` acknowledged becomes a NotReplicatedError (an error stays that error)."""
    *replies, acknowledged = replies
    if isinstance(acknowledged, Exception):
        # E.g. "WAIT cannot be used with replica instances" (a demoted node): not replicated.
        error = NotReplicatedError(f"WAIT for {wanted} replicas failed: {acknowledged}")
    elif int(acknowledged) >= wanted:
        return replies
    else:
        error = NotReplicatedError(
            f"{acknowledged} of {wanted} replicas acknowledged the write within {timeout_ms} ms"
        )
    return [r if isinstance(r, Exception) else error for r in replies]
