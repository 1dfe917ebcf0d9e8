"""The job ledger: one Redis hash and one Redis stream per job, shared by web and worker.

arq keeps a job's result for `keep_result` seconds and says "complete" for failures and aborts
alike. The ledger keeps what clients need for JOB_RETENTION seconds after the job's last change:
state (with cancelled apart from failed), tries, times, result or error, and progress; the stream
holds the job's events for listing and live streaming, from any web replica.

Keys: `<queue>:job:<id>` (hash) and `<queue>:job:<id>:events` (stream), with <queue> the default
queue's name, so every key of the service shares one prefix.
"""

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from arq.constants import in_progress_key_prefix, job_key_prefix
from pydantic_core import to_jsonable_python
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from .base import DeadLetter, JobError, JobEvent, JobRecord, JobState, Progress, Waiting
from .dead_letters import DeadLetters
from .dependencies import DEPENDENCIES, WAITING_FOR_PARENTS
from .limits import CHECK, RELEASE, TaskLimits
from .wake_channel import wake_channel

log = logging.getLogger(__name__)

START_WRITE_DELAY = 0.25
"""Seconds after a job's start (the worker's ledger) that its record says so, unless the job's
next change comes first and carries the start with it: a job that ends sooner costs one write
of its record instead of two (a round trip and a script per job, a fifth of the worker's cost on
a short task). Its record and events are the same in the end; only "in progress" shows up to
this much later. Tasks with limits write their start at once (their start is the limits' check).
"""

START_WRITE_TIMEOUT = 1.0
"""Seconds the delayed write of a start may take. One that fails is tried again, START_WRITE_DELAY
later, then twice that and so on up to START_RETRY_CAP, until it is written, or the job's next
change carries it, or the try ends."""

START_RETRY_CAP = 5.0

EVENTS_KEPT = 1000  # per job; older progress events are trimmed (approximately)
RECENT_WINDOW = 200  # records read per round trip when listing jobs
RECENT_SCAN = 2000  # records read at most per page of a listing

# One record update as one command: hash and stream change together (no reader sees one without
# the other), both live JOB_RETENTION from now, and the worker pays for one command per update
# instead of six (MULTI, HSET, EXPIRE, XADD, EXPIRE, EXEC): per job, most of the ledger's cost.
# A fresh record also enters the index of jobs by enqueue time (for listing, newest first), which
# forgets entries older than the retention as new ones come.
# RECORD is that update as a Lua function, so that another script (the web's enqueue, which
# writes a job's record together with the job: queue/enqueue.py) makes the same change.
# Its arguments: record hash, event stream, index; retention, events kept, fresh ("1": delete
# both first, and the job's children (queue.dependencies) of an earlier job of this id, and
# index the job), one JSON document {"drop": [names], "set": {name: value},
# "event": {name: value}, "start": absent, or a try's start {"drop", "set", "event"} applied
# first, once (Ledger.started)} (one argument, not dozens:
# redis-py's encoding of each argument is what costs the client), the time in ms, the job id.
RECORD = """
local function pairs_of(map)
    local flat = {}
    for name, value in pairs(map) do
        flat[#flat + 1] = name
        flat[#flat + 1] = value
    end
    return flat
end
local function record(hash, stream, index, retention, kept, fresh, change_json, now_ms, job_id)
    local change = cjson.decode(change_json)
    if fresh == '1' then
        redis.call('DEL', hash, stream, hash .. ':children')
        redis.call('ZADD', index, now_ms, job_id)
        redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (now_ms - retention * 1000))
    end
    local events = false
    local start = change.start
    if type(start) == 'table' then
        -- A try's start, once: not over a record that has seen this try (or a later one) start,
        -- nor over one that has ended. So the delayed write and each change carrying the start
        -- may arrive in any order, twice, or late (sent before a stall), and apply it once.
        local state = redis.call('HGET', hash, 'state')
        local seen = tonumber(redis.call('HGET', hash, 'tries') or '0') or 0
        local ended = state == 'succeeded' or state == 'failed' or state == 'cancelled'
        if not ended and seen < tonumber(start.set.tries) then
            if #start.drop > 0 then redis.call('HDEL', hash, unpack(start.drop)) end
            redis.call('HSET', hash, unpack(pairs_of(start.set)))
            redis.call('XADD', stream, 'MAXLEN', '~', kept, '*', unpack(pairs_of(start.event)))
            events = true
        end
    end
    if #change.drop > 0 then redis.call('HDEL', hash, unpack(change.drop)) end
    local fields = pairs_of(change.set)
    if #fields > 0 then redis.call('HSET', hash, unpack(fields)) end
    redis.call('EXPIRE', hash, retention)
    if type(change.event) == 'table' then
        redis.call('XADD', stream, 'MAXLEN', '~', kept, '*', unpack(pairs_of(change.event)))
        events = true
    end
    if events then redis.call('EXPIRE', stream, retention) end
end
"""
# KEYS: RECORD's three keys. ARGV: its six other arguments, in its order.
WRITE = RECORD + "record(KEYS[1], KEYS[2], KEYS[3], unpack(ARGV))\n"
# A job's end: WRITE, then its children told (queue.dependencies), in one script. ARGV: WRITE's
# six, the final state, its time (ISO), and how long arq keeps a freed child's job (ms). A job
# with no children pays one SMEMBERS of a missing key.
FINISH = (
    RECORD
    + DEPENDENCIES
    + """
record(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
settle_children(KEYS[1], ARGV[6], ARGV[7], KEYS[3], ARGV[1], ARGV[2], ARGV[5], ARGV[8], ARGV[9])
"""
)
# FINISH for a success, written in arq's end-of-job transaction (worker.job_end): keys of another
# type are no record of ours, left alone (-1 is returned and the worker logs it) rather than an
# error in arq's transaction. (A start written alone met them before the task ran; a start that
# goes with the end, Ledger.started, meets them here.)
SUCCEED = (
    """
for i = 1, 2 do
    local kind = redis.call('TYPE', KEYS[i]).ok
    if kind ~= 'none' and kind ~= (i == 1 and 'hash' or 'stream') then return -1 end
end
"""
    + FINISH
)
# FINISH for an ending arq made itself (its own timeout, an abort before the start), written in
# arq's end-of-job transaction (worker.job_end) from the result it stores: only if the record
# has not ended (the job wrapper writes the endings it sees), and cancelled rather than failed
# when ARGV[10] is "1" and a cancel was requested.
SETTLE = (
    RECORD
    + DEPENDENCIES
    + """
-- (A key of another type is no record of ours: left alone, not an error in arq's transaction.)
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then return 0 end
local change, final = ARGV[4], ARGV[7]
if ARGV[10] == '1' and redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
    final = 'cancelled'
    local decoded = cjson.decode(change)
    decoded.set.state, decoded.event.state = final, final
    change = cjson.encode(decoded)
end
record(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], change, ARGV[5], ARGV[6])
settle_children(KEYS[1], ARGV[6], final, KEYS[3], ARGV[1], ARGV[2], ARGV[5], ARGV[8], ARGV[9])
return 1
"""
)
# The web's cancel of a job no worker has claimed, in one script: taken from its parents while it
# waits for them (`pending`), or off its queue; arq's job deleted; its record cancelled and its
# children told (FINISH); and its webhook's delivery queued, if it has one (queue.deliveries). A
# cancel cut off halfway would leave a job no parent frees and no worker takes.
# A job a worker has claimed is left to its worker, whatever its record says: arq keeps a job in
# its queue while it runs, and its record says "queued" until its start is written (a short job's
# start goes with its end: Ledger.started).
# KEYS: FINISH's three, arq's job key, its in-progress key, the queues. ARGV: FINISH's nine, then
# the delivery's arq job key, payload and time to live (ms), or "", "", "0".
# Returns the queue it was taken from, or false (a worker has it, or it has ended).
CANCEL = (
    RECORD
    + DEPENDENCIES
    + """
if redis.call('EXISTS', KEYS[5]) == 1 then return false end
local taken = false
if redis.call('HDEL', KEYS[1], 'pending') == 1 then
    taken = redis.call('HGET', KEYS[1], 'queue')
else
    for i = 6, #KEYS do
        if redis.call('ZREM', KEYS[i], ARGV[6]) == 1 then
            taken = KEYS[i]
            break
        end
    end
end
if not taken then return false end
redis.call('DEL', KEYS[4])
record(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
settle_children(KEYS[1], ARGV[6], ARGV[7], KEYS[3], ARGV[1], ARGV[2], ARGV[5], ARGV[8], ARGV[9])
if ARGV[10] ~= '' then
    local message = string.sub(ARGV[10], #'__JOB_PREFIX__' + 1)
    redis.call('SET', ARGV[10], ARGV[11], 'PX', ARGV[12], 'NX')
    redis.call('ZADD', taken, 'NX', math.floor(tonumber(ARGV[5])), message)
    redis.call('PUBLISH', taken .. '__WAKE__', '')
end
return taken
""".replace("__JOB_PREFIX__", job_key_prefix).replace("__WAKE__", wake_channel(""))
)


def now() -> datetime:
    return datetime.now(tz=UTC)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Change:
    """A change of a record, as RECORD takes it: fields set and dropped, and its event."""

    fields: dict[str, str]
    event: dict[str, str] | None = None
    drop: tuple[str, ...] = ()


@dataclass
class PendingStart:
    """A start not written yet (Ledger.started): its change, and its delayed write."""

    change: Change
    timer: asyncio.TimerHandle | None = None
    sending: "asyncio.Task[None] | None" = None
    failures: int = 0


@dataclass(frozen=True)
class RecordWrite:
    """One update of a record, ready to send: alone, or queued in another transaction."""

    script: AsyncScript
    keys: tuple[str, ...]
    args: tuple[str, ...]

    def queue_in(self, pipe: Pipeline) -> None:
        """EVALSHA, in `pipe`'s transaction. Should Redis have lost the script, this command
        alone fails (NoScriptError from the transaction; the rest of it holds): `send` it then."""
        pipe.evalsha(self.script.sha, len(self.keys), *self.keys, *self.args)

    async def send(self) -> Any:
        """The script alone; its reply."""
        return await self.script(self.keys, self.args)


SuccessSink = Callable[[str, RecordWrite], None]
"""Takes a job's success write, by job id, to send it with arq's end of the job (worker.job_end)."""


class Ledger:
    """The JobRecorder of the worker (queue.base), and what the web reads records from."""

    def __init__(
        self,
        redis: "Redis",
        prefix: str,
        retention: int,
        dead_letter_limit: int = 10_000,
        success_sink: SuccessSink | None = None,
        expires_ms: int = 86_400_000,
        start_delay: float = 0.0,
    ) -> None:
        self.redis = redis
        # Above zero (the worker's), a start is written this much later, or with the job's next
        # change if that comes first (START_WRITE_DELAY).
        self.start_delay = start_delay
        self._pending: dict[str, PendingStart] = {}
        # How long arq keeps a job it has not run (arq's expires_extra_ms): a dependent freed by
        # its parents' end keeps its job that long from then (queue.dependencies).
        self.expires_ms = expires_ms
        # Given, a success is not written here but handed over: the worker writes it in the
        # transaction that stores arq's result, one round trip where there were two.
        self.success_sink = success_sink
        # EVALSHA, falling back to loading the script on NOSCRIPT (a restarted or failed-over
        # Redis forgets its scripts): the 1.2 KB text would otherwise travel, and be hashed by
        # Redis, on every write, which was a third of the worker's Redis time per job.
        self._write_script = redis.register_script(WRITE)
        self._finish_script = redis.register_script(FINISH)
        self._succeed_script = redis.register_script(SUCCEED)
        self._cancel_script = redis.register_script(CANCEL)
        self._settle_script = redis.register_script(SETTLE)
        self._limited_start = redis.register_script(RECORD + CHECK)
        self._release_script = redis.register_script(RELEASE)
        self.prefix = prefix
        self.retention = retention
        self.dead_letters = DeadLetters(redis, prefix, dead_letter_limit)

    async def load_scripts(self) -> None:
        """Load into Redis the scripts that ride in the worker's own transactions (a success, an
        end arq made: worker.job_end). There they go by hash alone, and a Redis that does not
        know one runs the rest of the transaction without it: the record is then written by
        itself, a round trip after arq's result, and a reader meanwhile sees the result without
        its record's end. The worker loads them at its start; a Redis that loses them later (a
        restart, a failover) costs that one round trip once."""
        for script in (self._succeed_script, self._settle_script):
            script.sha = await self.redis.script_load(script.script)

    def key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def events_key(self, job_id: str) -> str:
        return f"{self.key(job_id)}:events"

    def children_key(self, job_id: str) -> str:
        """The ids of the jobs that run after this one (queue.dependencies)."""
        return f"{self.key(job_id)}:children"

    @property
    def index(self) -> str:
        """Every job's id, scored by enqueue time (ms)."""
        return f"{self.prefix}:jobs"

    def change(
        self,
        job_id: str,
        fields: dict[str, str],
        event: dict[str, str] | None = None,
        drop: tuple[str, ...] = (),
        *,
        fresh: bool = False,
        before: Change | None = None,
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The keys and other arguments of RECORD that update the record and add `event`;
        `before`, a try's start not known to be written, goes first in the same write (RECORD
        applies a start once)."""
        document: dict[str, Any] = {"drop": drop, "set": fields, "event": event}
        if before is not None:
            document["start"] = {"drop": before.drop, "set": before.fields, "event": before.event}
        change = json.dumps(document)
        now_ms = repr(time.time() * 1000)  # sub-ms digits: a unique order for listing pages
        flag = "1" if fresh else "0"
        keys = (self.key(job_id), self.events_key(job_id), self.index)
        return keys, (str(self.retention), str(EVENTS_KEPT), flag, change, now_ms, job_id)

    def creation(
        self,
        job_id: str,
        task: str,
        queue_name: str,
        state: JobState = JobState.QUEUED,
        request_id: str | None = None,
        after: Sequence[str] = (),
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """RECORD's keys and arguments for a fresh record (an id may be reused once arq forgot
        the earlier job: its old record and events go). Its `enqueued_at`, to the microsecond,
        also tells an enqueue's own earlier write from another request's (queue/enqueue.py).
        A job that runs `after` others starts deferred, waiting for them (queue.dependencies)."""
        at = now().isoformat()
        if after:
            state = JobState.DEFERRED
        fields = {
            "task": task,
            "queue": queue_name,
            "state": state,
            "tries": "0",
            "enqueued_at": at,
        }
        if request_id:
            fields["request_id"] = request_id
        event = {"kind": "state", "state": state, "at": at}
        if after:
            fields.update(after=" ".join(after), wait_reason=WAITING_FOR_PARENTS)
            event["reason"] = WAITING_FOR_PARENTS
        return self.change(job_id, fields, event, fresh=True)

    async def _write(
        self,
        job_id: str,
        fields: dict[str, str],
        event: dict[str, str] | None = None,
        drop: tuple[str, ...] = (),
    ) -> None:
        """Update the record and add `event`, atomically, in one command (WRITE), with the
        job's start if that is not written yet."""
        pending, before = self._unwritten_start(job_id)
        await self._run(*self.change(job_id, fields, event, drop, before=before))
        self._written(job_id, pending)

    async def _run(
        self, keys: tuple[str, ...], args: tuple[str, ...], pipe: Pipeline | None = None
    ) -> None:
        if pipe is None:
            await self._write_script(keys, args)
            return
        # In a transaction, EVAL: a NOSCRIPT there would fail this command alone while the
        # others of the MULTI went through (Redis does not roll back).
        await cast("Awaitable[Any]", pipe.eval(WRITE, len(keys), *keys, *args))

    async def created(
        self,
        job_id: str,
        task: str,
        queue_name: str,
        state: JobState = JobState.QUEUED,
        request_id: str | None = None,
    ) -> None:
        """A fresh record (see `creation`): the web's enqueue writes it with the job, this
        alone is for tests and benchmarks."""
        await self._run(*self.creation(job_id, task, queue_name, state, request_id))

    async def recent(
        self,
        limit: int,
        before: float | None = None,
        state: JobState | None = None,
        task: str | None = None,
    ) -> tuple[list[JobRecord], list[float], float | None]:
        """Up to `limit` records, newest first, enqueued before `before` (ms), of `state` and
        `task` if given; each one's place in the index; and the `before` of the next page (None:
        no more). Reads at most RECENT_SCAN records, so a rare state costs a bounded walk, not
        a scan of every job."""
        found: list[JobRecord] = []
        positions: list[float] = []
        cursor = before
        examined = 0
        while examined < RECENT_SCAN:
            window = min(RECENT_WINDOW, RECENT_SCAN - examined)
            top = "+inf" if cursor is None else f"({cursor!r}"
            entries = await self.redis.zrevrangebyscore(
                self.index, top, "-inf", start=0, num=window, withscores=True
            )
            async with self.redis.pipeline(transaction=False) as pipe:
                for member, _score in entries:
                    pipe.hgetall(self.key(member.decode()))
                hashes = await pipe.execute()
            for (member, score), raw in zip(entries, hashes, strict=True):
                examined += 1
                cursor = float(score)
                if not raw:  # expired with its retention; its index entry goes soon
                    continue
                fields = {name.decode(): value.decode() for name, value in raw.items()}
                record = record_from(member.decode(), fields)
                if state not in (None, record.state) or task not in (None, record.task):
                    continue
                found.append(record)
                positions.append(cursor)
                if len(found) == limit:
                    return found, positions, cursor
            if len(entries) < window:
                return found, positions, None
        return found, positions, cursor

    async def started(
        self,
        job_id: str,
        task: str,
        queue_name: str,
        job_try: int,
        enqueued_at: datetime | None = None,
        limits: TaskLimits | None = None,
    ) -> float | None:
        """The try's start; with `limits`, only if the task's limits allow it now (queue.limits):
        else the record says why the job waits, and the answer is how long (seconds)."""
        at = now().isoformat()
        start = Change(
            {
                "task": task,
                "queue": queue_name,
                "state": JobState.IN_PROGRESS,
                "tries": str(job_try),
                "started_at": at,
            },
            {"kind": "state", "state": "in_progress", "at": at},
            # A new try's progress starts anew; a wait for a limit is over.
            ("percent", "message", "wait_reason", "wait_until"),
        )
        if limits is None and self.start_delay > 0:
            self._delay_start(job_id, start)
            return None
        keys, args = self.change(job_id, start.fields, start.event, start.drop)
        if limits is None:
            await self._write_script(keys, args)
            return None
        waiting = {"state": JobState.DEFERRED.value}
        event = {"kind": "state", "state": JobState.DEFERRED.value, "at": at}
        wait = json.dumps({"drop": [], "set": waiting, "event": event})
        wait_ms = await self._limited_start(
            (*keys, *limits.keys(self.prefix, job_id)),
            (*args, wait, *limits.args(job_id, job_try)),
        )
        return None if int(wait_ms) < 0 else int(wait_ms) / 1000

    def _delay_start(self, job_id: str, change: Change) -> None:
        self.forget_start(job_id)  # (an earlier try's, should one be left)
        pending = PendingStart(change)
        loop = asyncio.get_running_loop()
        pending.timer = loop.call_later(self.start_delay, self._send_start, job_id, pending)
        self._pending[job_id] = pending

    def _send_start(self, job_id: str, pending: PendingStart) -> None:
        pending.timer = None
        pending.sending = asyncio.create_task(self._write_start(job_id, pending))

    async def _write_start(self, job_id: str, pending: PendingStart) -> None:
        # The start alone, as a change carrying it (RECORD applies it once, whichever of this
        # write and the job's next change comes first: neither waits for the other).
        keys, args = self.change(job_id, {}, before=pending.change)
        try:
            async with asyncio.timeout(START_WRITE_TIMEOUT):
                await self._write_script(keys, args)
        except (RedisError, OSError) as exc:
            # Still pending: tried again, later and later, and carried by the job's next change.
            pending.failures += 1
            if pending.failures == 1:
                log.warning(
                    "the start of job %s not recorded yet (%s: %s); trying again",
                    job_id,
                    type(exc).__name__,
                    exc,
                )
            if self._pending.get(job_id) is pending:
                delay = min(START_RETRY_CAP, self.start_delay * 2**pending.failures)
                loop = asyncio.get_running_loop()
                pending.timer = loop.call_later(delay, self._send_start, job_id, pending)
        else:
            self._written(job_id, pending)
        finally:
            pending.sending = None

    def _unwritten_start(self, job_id: str) -> tuple[PendingStart | None, Change | None]:
        """The job's start not known to be written, which its next change carries (and the
        change, for `change(before=...)`)."""
        pending = self._pending.get(job_id)
        return pending, (pending.change if pending else None)

    def _written(self, job_id: str, pending: PendingStart | None) -> None:
        """`pending` is in Redis now: the job's later changes go without it."""
        if pending is not None and self._pending.get(job_id) is pending:
            del self._pending[job_id]
            if pending.timer is not None:
                pending.timer.cancel()
                pending.timer = None

    def forget_start(self, job_id: str) -> None:
        """The try is over: a start not written by now never is (the job's next try writes
        its own; a try that ended without a change of its record, by a Retry or an outage, was
        never recorded as started, which its record's state, still the one before, says)."""
        pending = self._pending.pop(job_id, None)
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()

    async def release(self, job_id: str, queue_name: str, limits: TaskLimits) -> None:
        """A job of a capped task ended: its place goes to the job that waited longest."""
        keys = limits.release_keys(self.prefix, queue_name)
        await self._release_script(keys, (job_id, wake_channel(queue_name)))

    async def inputs(self, job_id: str, parents: Sequence[str]) -> tuple[str | None, list[Any]]:
        """A dependent's `doomed` mark, if a parent failed or was cancelled, and its parents'
        results in order, from their records (queue.dependencies): one round trip, at its
        start. A result whose record has expired (JOB_RETENTION after the parent's end) is
        None."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.key(job_id), "doomed")
            for parent in parents:
                pipe.hget(self.key(parent), "result")
            doomed, *results = await pipe.execute()
        values = [None if raw is None else json.loads(raw) for raw in results]
        return (None if doomed is None else doomed.decode()), values

    async def cancel_unclaimed(
        self,
        job_id: str,
        job_key: str,
        queues: Sequence[str],
        delivery: tuple[str, bytes, int] | None = None,
    ) -> bool:
        """Cancel a job no worker has claimed (CANCEL): True if it was queued, deferred or
        waiting for its parents and is cancelled now, its children told and `delivery` (its
        webhook's arq job key, payload and time to live) queued; False if a worker has it or it
        has ended."""
        keys, args = self._outcome(job_id, JobState.CANCELLED, None, None, None)
        more = ("", b"", "0") if delivery is None else (delivery[0], delivery[1], str(delivery[2]))
        claim = in_progress_key_prefix + job_id
        taken = await self._cancel_script((*keys, job_key, claim, *queues), (*args, *more))
        return bool(taken)

    async def progress(self, job_id: str, percent: float, message: str = "") -> None:
        percent = max(0.0, min(100.0, float(percent)))
        at = now().isoformat()
        await self._write(
            job_id,
            {"percent": str(percent), "message": message},
            {"kind": "progress", "percent": str(percent), "message": message, "at": at},
        )

    async def finished(
        self,
        job_id: str,
        state: JobState,
        *,
        result: Any = None,
        error: JobError | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        # (Nothing awaited before a success is handed over: a cancel landing in such a wait, after
        # the task returned, would undo its success.)
        pending, before = self._unwritten_start(job_id)
        keys, args = self._outcome(job_id, state, result, error, finished_at, before)
        if state is JobState.SUCCEEDED and self.success_sink is not None:
            # Written with arq's end of the job, however long Redis takes (worker.process).
            self.success_sink(job_id, RecordWrite(self._succeed_script, keys, args))
            self._written(job_id, pending)
            return
        await self._finish_script(keys, args)
        self._written(job_id, pending)

    def settling(
        self,
        job_id: str,
        error: JobError | None,
        finished_at: datetime | None,
        aborted: bool,
    ) -> RecordWrite:
        """SETTLE: the record failed (cancelled if `aborted` after a cancel request), unless it
        has ended already, and its children told."""
        keys, args = self._outcome(job_id, JobState.FAILED, None, error, finished_at)
        return RecordWrite(self._settle_script, keys, (*args, "1" if aborted else "0"))

    def _outcome(
        self,
        job_id: str,
        state: JobState,
        result: Any,
        error: JobError | None,
        finished_at: datetime | None,
        before: Change | None = None,
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        at = (finished_at or now()).isoformat()
        fields = {"state": state.value, "finished_at": at}
        if state is JobState.SUCCEEDED:
            fields["result"] = json.dumps(to_jsonable_python(result, fallback=str))
        if error is not None:
            fields.update(error_type=error.type, error_message=error.message)
        event = {"kind": "state", "state": state.value, "at": at}
        if error is not None:
            event.update(error_type=error.type, error_message=error.message)
        # An error of an earlier, retried try is not this outcome's; nor is a wait for a limit.
        drop: tuple[str, ...] = ("wait_reason", "wait_until")
        if error is None:
            drop += ("error_type", "error_message")
        keys, args = self.change(job_id, fields, event, drop, before=before)
        # (FINISH: the job's children learn how it ended)
        return keys, (*args, state.value, at, str(self.expires_ms))

    async def retrying(self, job_id: str, error: JobError, delay: float) -> None:
        at = now().isoformat()
        fields = {
            "state": JobState.DEFERRED.value,
            "error_type": error.type,
            "error_message": error.message,
        }
        event = {"kind": "state", "state": JobState.DEFERRED.value, "at": at}
        event.update(error_type=error.type, error_message=error.message, retry_in=f"{delay:.3f}")
        await self._write(job_id, fields, event)

    async def requeued(self, job_id: str, reason: JobError) -> None:
        at = now().isoformat()
        event = {"kind": "state", "state": JobState.QUEUED.value, "at": at}
        event.update(error_type=reason.type, error_message=reason.message)
        await self._write(job_id, {"state": JobState.QUEUED.value}, event)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        """The job failed for good: its record says failed and its letter is kept, in one
        transaction. Two writes would let an outage fall between them: a record saying failed
        for a job that then runs again, or a letter (replayable) for one that may yet succeed."""
        pending, before = self._unwritten_start(letter.job_id)
        keys, args = self._outcome(
            letter.job_id, JobState.FAILED, None, letter.error, letter.failed_at, before
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            # EVAL, not EVALSHA: see _run.
            await cast("Awaitable[Any]", pipe.eval(FINISH, len(keys), *keys, *args))
            self.dead_letters.queue(pipe, letter)
            replies = await pipe.execute()
        self._written(letter.job_id, pending)
        await self.dead_letters.forget(replies[-2])

    async def request_cancel(self, job_id: str) -> None:
        await self._write(job_id, {"cancel_requested": "1"})

    async def cancel_requested(self, job_id: str) -> bool:
        found = self.redis.hexists(self.key(job_id), "cancel_requested")
        return bool(await cast("Awaitable[bool]", found))

    async def events(self, job_id: str, after: str | None = None) -> list[JobEvent]:
        """The job's events after id `after`, without waiting: live ones come through the web's
        shared reader (event_hub.py), not a blocking read per client."""
        start = f"({after}" if after else "-"
        entries = await self.redis.xrange(self.events_key(job_id), min=start, max="+")
        return [event_from(entry_id, fields) for entry_id, fields in entries]


def event_from(entry_id: bytes | str, raw: dict[bytes, bytes]) -> JobEvent:
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    event_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    at = datetime.fromisoformat(fields["at"])
    if fields["kind"] == "progress":
        progress = Progress(float(fields["percent"]), fields.get("message", ""))
        return JobEvent(id=event_id, kind="progress", at=at, progress=progress)
    error = None
    if "error_type" in fields:
        error = JobError(fields["error_type"], fields.get("error_message", ""))
    retry_in = float(fields["retry_in"]) if "retry_in" in fields else None
    waiting = None
    if "reason" in fields:
        waiting = Waiting(fields["reason"], _until(fields.get("until")))
    state = JobState(fields["state"])
    return JobEvent(
        id=event_id,
        kind="state",
        at=at,
        state=state,
        error=error,
        retry_in=retry_in,
        waiting=waiting,
    )


def record_from(job_id: str, fields: dict[str, str]) -> JobRecord:
    """A JobRecord from the ledger hash alone."""
    error = None
    if "error_type" in fields:
        error = JobError(fields["error_type"], fields.get("error_message", ""))
    progress = None
    if "percent" in fields:
        progress = Progress(float(fields["percent"]), fields.get("message", ""))
    return JobRecord(
        id=job_id,
        task=fields.get("task", "?"),
        state=JobState(fields.get("state", JobState.QUEUED)),
        tries=int(fields.get("tries", "0")),
        queue=fields.get("queue"),
        enqueued_at=_time(fields.get("enqueued_at")),
        started_at=_time(fields.get("started_at")),
        finished_at=_time(fields.get("finished_at")),
        result=json.loads(fields["result"]) if "result" in fields else None,
        error=error,
        progress=progress,
        cancel_requested=fields.get("cancel_requested") == "1",
        request_id=fields.get("request_id"),
        waiting=_waiting(fields),
        parents=tuple(fields["after"].split()) if "after" in fields else (),
    )


def _waiting(fields: dict[str, str]) -> Waiting | None:
    """Why and until when a job waits for its task's limits (queue.limits), if it does."""
    if "wait_reason" not in fields:
        return None
    return Waiting(fields["wait_reason"], _until(fields.get("wait_until")))


def _until(ms: str | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
