"""Claiming due jobs: many in one Redis script, where arq spends four round trips on each, and
arq's read of each claimed job in the same script, where arq spends one more.

arq claims a job with WATCH, EXISTS, ZSCORE and a MULTI/EXEC of its in-progress key, one job after
another: at 50 slots that is 200 sequential round trips before a full worker has its jobs. The
script below takes the same decision for every candidate at once, atomically (a script runs alone,
as a WATCH guarded transaction would): a job is this worker's when no worker holds it and it is
still in the queue and due.

The claim's value is a token of this call, not arq's `1`: redis-py resends a command whose reply
a dropped connection lost, and the resent script then finds the claims it already wrote and
returns them again, instead of leaving those jobs held by nobody until their claims expire. (A
claim whose every try failed is left to expire, as arq's is.)

arq's run_job then opens with a transaction of its own: the job (GET), its try (INCR and EXPIRE
of the retry key) and whether an abort waits for it (ZREM). The script does the same for each job
it claims, and returns what those commands returned; `ClaimingRedis` hands that to arq's run_job
in place of its transaction (`Claimed.read`). At idle that round trip was a fifth of a job's
latency; under load, one Redis call a job fewer. A resent claim counts no try twice (it reads the
count its first run left), though an abort its first run took is not seen again (one that came
in the moment between: the job runs; a cancel through the web also marks its record).
"""

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from redis.asyncio import Redis

CLAIM = """
local now, lifetime, token, aborts = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4] == '1'
local claimed = {}
local n = 0
for i = 3, #KEYS, 3 do
  n = n + 1
  local holder = redis.call('GET', KEYS[i])
  if not holder or holder == token then
    local job_id = ARGV[n + 4]
    local score = redis.call('ZSCORE', KEYS[1], job_id)
    if score and tonumber(score) <= now then
      local try
      if holder then
        try = tonumber(redis.call('GET', KEYS[i + 2]) or '1')
      else
        redis.call('SET', KEYS[i], token, 'PX', lifetime)
        try = redis.call('INCR', KEYS[i + 2])
        redis.call('EXPIRE', KEYS[i + 2], 88400)
      end
      local aborted = 0
      if aborts then aborted = redis.call('ZREM', KEYS[2], job_id) end
      claimed[#claimed + 1] = {job_id, score, redis.call('GET', KEYS[i + 1]) or false, try, aborted}
    end
  end
end
return claimed
"""
"""KEYS: the queue, arq's abort set, then for each candidate its in-progress key, job key and
retry key; ARGV: now (ms), the claim's lifetime (ms), this claim's token, "1" to take aborts (as
arq's run_job does when it allows them), then the candidates' ids. Returns, for each job claimed:
its id, score, serialized job (nil if it expired), try, and 1 if an abort was waiting for it.
(88400: the seconds arq keeps a retry count.)"""


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
        self._queue_name = queue_name
        self._lifetime_ms = lifetime_ms
        self._aborts = "1" if aborts else "0"

    async def claim(self, job_ids: list[str], now_ms: int, token: str) -> list[Claimed]:
        """Claim those of `job_ids` that are due by `now_ms` and held by no worker; `token` names
        this claim (a new one per call: see above)."""
        if not job_ids:
            return []
        keys = [self._queue_name, abort_jobs_ss]
        for job_id in job_ids:
            keys += [in_progress_key_prefix + job_id, job_key_prefix + job_id]
            keys.append(retry_key_prefix + job_id)
        reply = await self._script(keys, [now_ms, self._lifetime_ms, token, self._aborts, *job_ids])
        return [
            Claimed(job_id.decode(), int(float(score)), job, int(job_try), aborted == 1)
            for job_id, score, job, job_try, aborted in reply
        ]

    async def give_back(self, claimed: list[Claimed], token: str) -> None:
        """Undo a claim (`token`'s) of jobs that will not start here: for another worker now."""
        keys: list[str] = []
        for job in claimed:
            keys += [in_progress_key_prefix + job.job_id, retry_key_prefix + job.job_id]
        await self._unclaim(keys, [token])


UNCLAIM = """
for i = 1, #KEYS, 2 do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    if redis.call('DECR', KEYS[i + 1]) <= 0 then redis.call('DEL', KEYS[i + 1]) end
  end
end
"""
"""KEYS: each job's in-progress key and retry key; ARGV: the claim's token. Gives back the jobs a
claim took but will not start: their claims, where still this token's, and the tries they
counted."""


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
