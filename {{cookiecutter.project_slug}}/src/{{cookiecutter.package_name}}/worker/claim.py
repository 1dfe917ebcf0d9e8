"""Claiming due jobs: many in one Redis script, where arq spends four round trips on each, and
arq's read of each claimed job in the same script, where arq spends one more.

arq claims a job with WATCH, EXISTS, ZSCORE and a MULTI/EXEC of its in-progress key, one job after
another: at 50 slots that is 200 sequential round trips before a full worker has its jobs. The
script below takes the same decision for every candidate at once, atomically (a script runs alone,
as a WATCH guarded transaction would): a job is this worker's when no worker holds it and it is
still in the queue and due.

The claim's value is a token of this call, not arq's `1`: redis-py resends a command whose reply
a dropped connection lost, and the resent script then finds the claims it already wrote and
returns them again, instead of leaving those jobs held by nobody until their claims expire. A
claim whose every try failed (a stall past redis-py's retries, the poll's turn timeout) may have
run all the same: `LostClaims` keeps its token, and the next claim of those jobs is sent with it
(arq's claim, whose `1` names no worker, is left to expire and counts the job's try twice).

arq's run_job then opens with a transaction of its own: the job (GET), its try (INCR and EXPIRE
of the retry key) and whether an abort waits for it (ZREM). The script does the same for each job
it claims, and returns what those commands returned; `ClaimingRedis` hands that to arq's run_job
in place of its transaction (`Claimed.read`). At idle that round trip was a fifth of a job's
latency; under load, one Redis call a job fewer. A resent claim counts no try twice (it reads the
count its first run left), though an abort its first run took is not seen again (one that came
in the moment between: the job runs; a cancel through the web also marks its record).

A job handed to an idle worker (queue.wake_channel) arrives claimed by the enqueue script, on the
same terms: `Claimer` also enters the worker in the idle set (and a claim of its own takes it
out: busy), confirms a claim that a late message carries, and gives back what the worker will
not start. A message lost on its way (the connection cut after Redis sent it) leaves its job
claimed for the worker, which no message will start: the claim script takes such a job as this
worker's once its claim is older than any message that starts its job unconfirmed (LOST_AFTER_MS),
re-keyed to the claim's token so that the message, if it arrives after all, fails its
confirmation (worker.handoff) instead of starting the job again.
"""

import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from redis.asyncio import Redis

from ..queue.wake_channel import idle_workers_key, wake_channel

FRESH_MS = 2_000
"""A handed job's message younger than this (by Redis's clock) starts its job at once, on the
claim the hand-off wrote; an older one has the claim confirmed, and extended to a full lifetime,
first (worker.handoff). A job started at once keeps what is left of that claim: this bounds what
it loses of arq's 10 s between the job's timeout and its claim's end."""

LOST_AFTER_MS = FRESH_MS + 5_000
"""A job handed to this worker whose claim is older than this was not started by its message
(one that old is confirmed first, and finds the claim taken): its message was lost, and the claim
script takes the job. The 5 s between the two absorb errors in the worker's reckoning of Redis's
clock (read when it registered)."""

CLAIM = """
local now, lifetime, token, aborts = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4] == '1'
local member, handed = ARGV[5], ARGV[6]
local claimed = {}
local n = 0
for i = 4, #KEYS, 3 do
  n = n + 1
  local holder = redis.call('GET', KEYS[i])
  -- Handed to this worker, its message never read (lost with the connection): this worker's
  -- once its claim is LOST_AFTER_MS ms old, when a message still to come is confirmed first
  -- (worker.handoff), and that confirmation then fails, as the claim is this call's.
  local lost = holder and holder ~= token and handed ~= '' and holder == handed
  if not holder or holder == token or lost then
    local job_id = ARGV[n + 6]
    local score = redis.call('ZSCORE', KEYS[1], job_id)
    if lost and redis.call('PTTL', KEYS[i]) + LOST_AFTER_MS >= tonumber(lifetime) then
      score = false
    end
    if score and tonumber(score) <= now then
      -- A full lifetime from now, as the job starts now, also where this claim's earlier run
      -- (long past, maybe) or a hand-off claimed it: that try is the one it counted.
      redis.call('SET', KEYS[i], token, 'PX', lifetime)
      local try
      if holder then
        try = tonumber(redis.call('GET', KEYS[i + 2]) or '1')
      else
        try = redis.call('INCR', KEYS[i + 2])
        redis.call('EXPIRE', KEYS[i + 2], 88400)
      end
      local aborted = 0
      if aborts then aborted = redis.call('ZREM', KEYS[2], job_id) end
      claimed[#claimed + 1] = {job_id, score, redis.call('GET', KEYS[i + 1]) or false, try, aborted}
    end
  end
end
-- Busy now: no more jobs handed over.
if member ~= '' and #claimed > 0 then redis.call('ZREM', KEYS[3], member) end
return claimed
""".replace("LOST_AFTER_MS", str(LOST_AFTER_MS))
"""KEYS: the queue, arq's abort set, the queue's idle workers, then for each candidate its
in-progress key, job key and retry key; ARGV: now (ms), the claim's lifetime (ms), this claim's
token, "1" to take aborts (as arq's run_job does when it allows them), the worker's entry in the
idle set (taken out once it claims a job; empty: none), the worker's hand-off token (its jobs
handed over, the try counted by the hand-off; empty: none), then the candidates' ids. Returns, for
each job claimed: its id, score, serialized job (nil if it expired), try, and 1 if an abort was
waiting for it. (88400: the seconds arq keeps a retry count.)"""


@dataclass(frozen=True)
class Claimed:
    job_id: str
    score: int
    """The job's score in the queue: when it was due (ms), as arq's run_job takes it."""
    job: bytes | None
    """arq's serialized job, or None if it expired."""
    job_try: int
    aborted: bool

    def read(self) -> "ClaimedRead":
        return ClaimedRead(self)


class Claimer:
    """Claims due jobs of one queue for this worker (the script is sent once, then by its hash)."""

    def __init__(self, redis: Redis, queue_name: str, lifetime_ms: int, aborts: bool) -> None:
        self._script = redis.register_script(CLAIM)
        self._unclaim = redis.register_script(UNCLAIM)
        self._confirm = redis.register_script(CONFIRM)
        self._register = redis.register_script(REGISTER)
        self.redis = redis
        self._queue_name = queue_name
        self._lifetime_ms = lifetime_ms
        self._aborts = "1" if aborts else "0"

    async def claim(
        self, job_ids: list[str], now_ms: int, token: str, member: str = "", handed: str = ""
    ) -> list[Claimed]:
        """Claim those of `job_ids` that are due by `now_ms` and held by no worker; `token` names
        this claim (a new one per call: see above). `member`, this worker's entry in the idle
        set, leaves it if a job is claimed. `handed`, this worker's hand-off token: a job
        handed to it whose claim is older than LOST_AFTER_MS is claimed too (its message lost:
        see CLAIM)."""
        if not job_ids:
            return []
        keys = [self._queue_name, abort_jobs_ss, idle_workers_key(self._queue_name)]
        for job_id in job_ids:
            keys += [in_progress_key_prefix + job_id, job_key_prefix + job_id]
            keys.append(retry_key_prefix + job_id)
        args: list[str | int] = [now_ms, self._lifetime_ms, token, self._aborts, member, handed]
        args += job_ids
        reply = await self._script(keys, args)
        return [
            Claimed(job_id.decode(), int(float(score)), job, int(job_try), aborted == 1)
            for job_id, score, job, job_try, aborted in reply
        ]

    async def give_back(self, job_ids: Sequence[str], token: str) -> None:
        """Undo a claim (`token`'s) of jobs that will not start here: for another worker now,
        told by a notice on the queue's channel."""
        keys: list[str] = []
        for job_id in job_ids:
            keys += [in_progress_key_prefix + job_id, retry_key_prefix + job_id]
        channel = wake_channel(self._queue_name)
        await self._unclaim(keys, [token, channel, *job_ids])

    async def confirm(self, job_id: str, token: str) -> bool:
        """Extend a handed-off job's claim (`token`'s) to a full lifetime from now; False if it
        is no longer this worker's (lapsed, maybe taken by another worker)."""
        return bool(
            await self._confirm([in_progress_key_prefix + job_id], [token, self._lifetime_ms])
        )

    async def register(self, member: str) -> int:
        """Enter this worker in the queue's idle set, for jobs handed over; Redis's clock (ms)."""
        return int(await self._register([idle_workers_key(self._queue_name)], [member]))

    async def unregister(self, member: str) -> None:
        await self.redis.zrem(idle_workers_key(self._queue_name), member)


class LostClaims:
    """Claims sent without an answer: Redis may have run them (the reply lost), or not (the
    command lost). Either way the jobs they named are sent again, as soon as they are claimed
    next, under the same token: a claim Redis ran is then found as this worker's, its try counted
    once, and the job starts at once rather than when its claim expires; one Redis never ran is
    made then. Only those jobs ride that token: a job it claims runs here, and a token sent
    again with it could find arq's kept in-progress key of that job's retry (its value) and take
    it as claimed. A token is forgotten once every job it named has been answered for, or its
    claim lifetime after its last loss (its claims have expired by then). A worker that stops
    gives back what is left (`pending`): claims Redis ran, the tries they counted."""

    def __init__(self, lifetime_s: float) -> None:
        self._lifetime_s = lifetime_s
        self._lost: dict[str, tuple[float, set[str]]] = {}
        """token -> (when its claims have surely expired (monotonic), the jobs it named)"""

    def next_claim(self, job_ids: Sequence[str]) -> tuple[str, list[str]]:
        """The token and jobs of the next claim among `job_ids`: a lost claim's jobs under its
        token first (the others wait for the next claim), else all under a new token."""
        for token, ids in self.pending():
            again = [job_id for job_id in job_ids if job_id in ids]
            if again:
                return token, again
        return uuid.uuid4().hex, list(job_ids)

    def pending(self) -> list[tuple[str, set[str]]]:
        """The lost claims whose claims may still hold: each token and its jobs."""
        now = time.monotonic()
        for token, (expires, _) in list(self._lost.items()):
            if expires <= now:
                del self._lost[token]
        return [(token, ids) for token, (_, ids) in self._lost.items()]

    def answered(self, token: str, job_ids: Sequence[str]) -> None:
        lost = self._lost.get(token)
        if lost is not None:
            lost[1].difference_update(job_ids)
            if not lost[1]:
                del self._lost[token]

    def lost(self, token: str, job_ids: Sequence[str]) -> None:
        """No answer to the claim of `job_ids` under `token` (an error, a timeout, a cancel)."""
        _, ids = self._lost.get(token, (0.0, set()))
        ids.update(job_ids)
        # From this loss: a resend that Redis ran later claims for a lifetime from then.
        self._lost[token] = (time.monotonic() + self._lifetime_s, ids)

    def __len__(self) -> int:
        return len(self._lost)


UNCLAIM = """
for i = 1, #KEYS, 2 do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    if redis.call('DECR', KEYS[i + 1]) <= 0 then redis.call('DEL', KEYS[i + 1]) end
    redis.call('PUBLISH', ARGV[2], ARGV[2 + (i + 1) / 2])
  end
end
"""
"""KEYS: each job's in-progress key and retry key; ARGV: the claim's token, the queue's wake
channel, the jobs' ids. Gives back the jobs a claim took but will not start: their claims, where
still this token's, and the tries they counted; each job's notice wakes the other workers."""

CONFIRM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
"""KEYS: a job's in-progress key; ARGV: the hand-off's token, the claim's full lifetime (ms)."""

REGISTER = """
redis.call('ZADD', KEYS[1], redis.call('TIME')[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 86400)
local time = redis.call('TIME')
return time[1] * 1000 + math.floor(time[2] / 1000)
"""
"""KEYS: the queue's idle workers; ARGV: this worker's entry. Its score is when it registered
(s), so that the latest is handed the next job; the set goes a day after its last registration
(an entry of a worker that died without unregistering goes with the first job handed to it)."""


CLAIMED_READ: ContextVar["ClaimedRead | None"] = ContextVar("claimed_read", default=None)
"""Set in the task that runs a claimed job, for the first transaction it opens: arq's read."""


class ClaimedRead:
    """What arq's run_job takes for its opening transaction: its commands are taken down, not
    sent, and `execute` answers them as Redis did inside the claim."""

    def __init__(self, claimed: Claimed) -> None:
        self._claimed = claimed
        self._replies: list[Any] = []

    async def __aenter__(self) -> "ClaimedRead":
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    def get(self, key: str) -> None:
        self._replies.append(self._claimed.job)

    def incr(self, key: str) -> None:
        self._replies.append(self._claimed.job_try)

    def expire(self, key: str, seconds: int) -> None:
        self._replies.append(True)

    def zrem(self, key: str, *members: str) -> None:
        self._replies.append(int(self._claimed.aborted))

    async def execute(self) -> list[Any]:
        return self._replies


class ClaimingRedis(ArqRedis):
    """The worker's Redis client: the first transaction a claimed job's task opens (arq's read,
    the first thing its run_job does) is answered from the claim (CLAIMED_READ)."""

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        read = CLAIMED_READ.get()
        if read is None:
            return super().pipeline(transaction, shard_hint)
        CLAIMED_READ.set(None)
        return read
