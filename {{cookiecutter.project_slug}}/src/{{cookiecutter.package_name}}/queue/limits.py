"""Rate limits and concurrency caps of tasks, held by Redis for every worker of the fleet.

A task may declare `rate=Rate(50, per=10)` (at most 50 starts in any 10 seconds) and/or
`concurrency=3` (at most 3 running at once), in tasks/registry.py. The check is part of the
script that records a job's start (queue.ledger, `Ledger.started`): a job within its limits
starts as any other, in the same one round trip; a job over them does not start. It is put back
in the queue for later (arq's Retry, with its try given back, so waiting burns no try), its
record says "deferred", why and until when, and its worker's slot goes to the next job: a
limited task never holds up the other tasks of its queue.

How long a job waits:
- Over its rate, until the time it is booked for: each waiting job books the earliest time at
  which it would keep the limit with the starts and bookings before it, so waiting jobs come back
  spread over the coming windows instead of all at once. A booking is a hint, not a right: the
  start is checked again when the job comes back (against the starts of the last `per` seconds,
  by Redis's clock), which is what makes the limit exact in any window, however late a worker
  picks the job up.
- Over its cap, until a running job of the task ends: its end (`release`) makes the job that has
  waited longest due at once and wakes the workers; CAP_RECHECK is the fallback should that
  notice be lost (jobs further back in the line fall back less often, so that a line of
  thousands does not keep the workers busy re-checking). A job killed without an end (SIGKILL)
  holds its place until its longest run (the task's timeout and the worker's backstop) is over.

Costs: the check rides in the start's script (no round trip more; a rate's check reads up to
twice its limit's entries, so keep limits in the hundreds); a capped job's end takes one round
trip more, to give its place back.

Keys, beside the job's record: `<queue>:limit:<task>:starts` (the starts of the last window),
`:booked` (the rate's waiting jobs, by booked time), `:running` (the cap's holders, by when their
hold lapses) and `:waiting` (the cap's waiting jobs, by when they began to wait, in µs).
"""

from dataclasses import dataclass

from arq.constants import retry_key_prefix

CAP_RECHECK = 5.0
"""Seconds the job at the head of a cap's line waits at most (a running job's end makes it due
sooner); the n-th in line waits (1 + n // cap) times as long, up to 12 times."""

WAITING_KEPT = 86_400
"""Seconds the cap's list of waiting jobs outlives its last change (a cancelled job's entry, met
by a later end, is passed over)."""

# The checks, ahead of the ledger's RECORD (the record's write of the start, or of the wait).
# KEYS: RECORD's three keys; starts, booked, running, waiting; arq's retry key of the job.
# ARGV: RECORD's six arguments for the start (their `fresh` is "0"); the wait's change (JSON,
# completed here with its reason and time); rate limit and window (ms) (0: none); cap and hold
# (ms) (0: none); the cap's recheck (ms); the start's member (the job id and try: unique);
# how long to keep the waiting list (s); the try.
# Returns -1 for a start, else the milliseconds to wait. A call sent again (redis-py resends one
# whose reply was lost) answers as the first did: a start already counted starts, and a try
# already given back is not given back twice.
CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local job_id = ARGV[6]
local rate, per = tonumber(ARGV[8]), tonumber(ARGV[9])
local cap, hold, recheck = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local starts, booked, running, waiting = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local due, reason = nil, nil
if rate > 0 and redis.call('ZSCORE', starts, ARGV[13]) then
    record(KEYS[1], KEYS[2], KEYS[3], unpack(ARGV, 1, 6))  -- this try's start, sent again
    return -1
end
if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', running, '-inf', now)  -- holds of jobs killed mid-run
    if not redis.call('ZSCORE', running, job_id) and redis.call('ZCARD', running) >= cap then
        -- In line by when each began to wait; the head rechecks at `recheck`, the jobs behind
        -- it less often (an end wakes the head anyway): a long line does not spin.
        redis.call('ZADD', waiting, 'NX', t[1] .. string.format('%06d', t[2]), job_id)  -- (us)
        redis.call('EXPIRE', waiting, ARGV[14])
        local place = redis.call('ZRANK', waiting, job_id)
        due, reason = now + recheck * math.min(12, 1 + math.floor(place / cap)), 'concurrency'
    end
end
if not due and rate > 0 then
    redis.call('ZREMRANGEBYSCORE', starts, '-inf', now - per)
    if redis.call('ZCARD', starts) >= rate then
        redis.call('ZREMRANGEBYSCORE', booked, '-inf', now - per)
        redis.call('ZREM', booked, job_id)
        -- The rate-th latest of the starts and bookings: a window after it holds fewer.
        local times = {}
        for _, key in ipairs({starts, booked}) do
            local found = redis.call('ZREVRANGE', key, 0, rate - 1, 'WITHSCORES')
            for i = 2, #found, 2 do times[#times + 1] = tonumber(found[i]) end
        end
        table.sort(times, function(a, b) return a > b end)
        due, reason = math.max(now + 1, times[rate] + per), 'rate'
        redis.call('ZADD', booked, due, job_id)
        redis.call('PEXPIRE', booked, due - now + per)
        if cap > 0 then redis.call('ZREM', waiting, job_id) end  -- not waiting for the cap
    end
end
if due then
    -- Not a try: arq counted this start, which did not happen.
    if tonumber(redis.call('GET', KEYS[8]) or '0') == tonumber(ARGV[15]) then
        redis.call('DECR', KEYS[8])
    end
    local change = cjson.decode(ARGV[7])
    change.set.wait_reason, change.set.wait_until = reason, string.format('%d', due)
    change.event.reason, change.event['until'] = reason, string.format('%d', due)
    record(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], '0', cjson.encode(change), ARGV[5], job_id)
    return due - now
end
if rate > 0 then
    redis.call('ZADD', starts, now, ARGV[13])
    redis.call('PEXPIRE', starts, per)
    redis.call('ZREM', booked, job_id)
end
if cap > 0 then
    redis.call('ZADD', running, now + hold, job_id)
    redis.call('PEXPIRE', running, hold)
    redis.call('ZREM', waiting, job_id)
end
record(KEYS[1], KEYS[2], KEYS[3], unpack(ARGV, 1, 6))
return -1
"""

# A capped job's end: its hold goes, and the job that has waited longest and is not due yet is
# due now, its workers woken. It keeps its place in line until it starts (a job that comes while
# the place is free may take it first: it then waits again, still at the head).
# KEYS: running, waiting, the arq queue. ARGV: the job id, the queue's wake channel.
RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, waiter in ipairs(redis.call('ZRANGE', KEYS[2], 0, 19)) do
    local score = redis.call('ZSCORE', KEYS[3], waiter)
    if not score then
        redis.call('ZREM', KEYS[2], waiter)  -- no longer queued (cancelled): out of the line
    elseif tonumber(score) > now then
        redis.call('ZADD', KEYS[3], 'XX', now, waiter)
        redis.call('PUBLISH', ARGV[2], '')
        return 1
    end
    -- (already due, woken by an earlier end: this place goes to the next in line)
end
return 0
"""


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """One task's limits as its worker checks them (the registry's Rate and cap, with the
    longest a run may hold its place)."""

    task: str
    rate: int = 0
    """Starts allowed in any `per_ms` (0: no rate limit)."""
    per_ms: int = 0
    concurrency: int = 0
    """Jobs running at once (0: no cap)."""
    hold_ms: int = 0
    """How long a start holds its place in the cap at most: the task's longest run."""

    def keys(self, prefix: str, job_id: str) -> tuple[str, ...]:
        base = f"{prefix}:limit:{self.task}"
        return (
            f"{base}:starts",
            f"{base}:booked",
            f"{base}:running",
            f"{base}:waiting",
            retry_key_prefix + job_id,
        )

    def args(self, job_id: str, job_try: int) -> tuple[str, ...]:
        return (
            str(self.rate),
            str(self.per_ms),
            str(self.concurrency),
            str(self.hold_ms),
            str(int(CAP_RECHECK * 1000)),
            f"{job_id}:{job_try}",
            str(WAITING_KEPT),
            str(job_try),
        )

    def release_keys(self, prefix: str, queue_name: str) -> tuple[str, str, str]:
        base = f"{prefix}:limit:{self.task}"
        return f"{base}:running", f"{base}:waiting", queue_name
