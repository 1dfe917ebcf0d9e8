"""Claiming due jobs: many in one Redis script, where arq spends four round trips on each.

arq claims a job with WATCH, EXISTS, ZSCORE and a MULTI/EXEC of its in-progress key, one job after
another: at 50 slots that is 200 sequential round trips before a full worker has its jobs. The
script below takes the same decision for every candidate at once, atomically (a script runs alone,
as a WATCH guarded transaction would): a job is this worker's when no worker holds it and it is
still in the queue and due.

The claim's value is a token of this call, not arq's `1`: redis-py resends a command whose reply
a dropped connection lost, and the resent script then finds the claims it already wrote and
returns them again, instead of leaving those jobs held by nobody until their claims expire. (A
claim whose every try failed is left to expire, as arq's is.)
"""

from dataclasses import dataclass

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

CLAIM = """
local now, lifetime, token = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local claimed = {}
for i = 2, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if not holder or holder == token then
    local job_id = ARGV[i + 2]
    local score = redis.call('ZSCORE', KEYS[1], job_id)
    if score and tonumber(score) <= now then
      if not holder then
        redis.call('SET', KEYS[i], token, 'PX', lifetime)
      end
      claimed[#claimed + 1] = job_id
      claimed[#claimed + 1] = score
    end
  end
end
return claimed
"""
"""KEYS: the queue, then each candidate's in-progress key; ARGV: now (ms), the claim's lifetime
(ms), this claim's token, then the candidates' ids. Returns id, score, id, score ... of the jobs
claimed."""


@dataclass(frozen=True)
class Claimed:
    job_id: str
    score: int
    """The job's score in the queue: when it was due (ms), as arq's run_job takes it."""


class Claimer:
    """Claims due jobs of one queue for this worker (the script is sent once, then by its hash)."""

    def __init__(self, redis: Redis, queue_name: str, lifetime_ms: int) -> None:
        self._script = redis.register_script(CLAIM)
        self._queue_name = queue_name
        self._lifetime_ms = lifetime_ms

    async def claim(self, job_ids: list[str], now_ms: int, token: str) -> list[Claimed]:
        """Claim those of `job_ids` that are due by `now_ms` and held by no worker; `token` names
        this claim (a new one per call: see above)."""
        if not job_ids:
            return []
        keys = [self._queue_name, *(in_progress_key_prefix + job_id for job_id in job_ids)]
        reply = await self._script(keys, [now_ms, self._lifetime_ms, token, *job_ids])
        return [
            Claimed(job_id.decode(), int(float(score)))
            for job_id, score in zip(reply[::2], reply[1::2], strict=True)
        ]
