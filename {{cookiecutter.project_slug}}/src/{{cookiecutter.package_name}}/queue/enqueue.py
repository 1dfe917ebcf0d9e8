"""One job enqueued as one Redis command: the Lua script of ArqJobQueue.enqueue.

Claiming an Idempotency-Key, refusing a taken job id, writing the job's record (the ledger's
RECORD), arq's job and its place in the queue, and the wake notice happen in one script: Redis
runs it whole or, when it refuses writes (full memory, a read-only replica), not at all. So a
key never points at a job that was never written, and no record exists of a job never queued.

One command also makes a retry safe. When Redis stalls past the socket timeout, redis-py sends
the command again on a new connection, and the first one, waiting in the kernel, still runs when
Redis resumes: the retry then finds that first execution's job (or key). The record's
`enqueued_at`, chosen before the first send and identical in the retry, tells that request's own
write from another request's, and the script answers "created" for it, as the first would have.
"""

from .dependencies import DEPENDENCIES
from .ledger import RECORD

# A job due now goes to an idle worker that registered (queue.wake_channel: the hand-off): the
# worker taken out of the set, the job sent on its channel, and, if Redis delivered the message,
# claimed for it as the worker's claim script would (worker.claim: in-progress key for the
# worker's claim lifetime, try, abort). Not delivered (the worker is gone): the next one, three at
# most. Not where a claim exists already (a job of this id that still runs).
# The message (HandOff.parse): "<Redis time, ms> <try> <aborted> <score> <id length>\n<id><job>".
HAND_OFF = """
local function hand_off(idle, in_progress, retry, aborts, channel, job_id, score, job)
    if redis.call('EXISTS', in_progress) == 1 then return false end
    for _ = 1, 3 do
        local popped = redis.call('ZPOPMAX', idle)
        if #popped == 0 then return false end
        local token, lifetime, takes_aborts = string.match(popped[1], '^(%S+) (%d+) ([01])$')
        if token then
            local try = tonumber(redis.call('GET', retry) or '0') + 1
            local aborted = 0
            if takes_aborts == '1' and redis.call('ZSCORE', aborts, job_id) then aborted = 1 end
            local time = redis.call('TIME')
            local now = string.format('%d', time[1] * 1000 + math.floor(time[2] / 1000))
            local head = table.concat({now, try, aborted, score, #job_id}, ' ')
            local message = head .. '\\n' .. job_id .. job
            if redis.call('PUBLISH', channel .. ':' .. token, message) > 0 then
                redis.call('SET', in_progress, token, 'PX', lifetime)
                redis.call('INCR', retry)
                redis.call('EXPIRE', retry, 88400)
                if aborted == 1 then redis.call('ZREM', aborts, job_id) end
                return true
            end
        end
    end
    return false
end
"""

# With DURABLE_ENQUEUE_REPLICAS the answer waits (Redis WAIT) until replicas have this
# connection's latest write. A replay writes nothing new, so WAIT would return at once, while the
# write it repeats, made on another connection, may not have reached them: a replay writes a
# value it finds back (which Redis replicates after the earlier write) before it answers.
# Only then: a full Redis refuses that write, and a replay without replicas needs none.
DURABLE = """
local function rewrite(hash, field)
    redis.call('HSET', hash, field, redis.call('HGET', hash, field))
end
"""

# KEYS: the record's three (RECORD's), arq's job key, arq's result key, the queue, arq's abort
# set, arq's in-progress and retry keys of the job, the queue's idle workers (HAND_OFF), and the
# idempotency key's claim if there is one.
# ARGV: RECORD's six arguments (the record's change is fresh), the serialized job, its time to
# live (ms), its score (when it may start, ms), the wake channel, "1" if the caller chose the id
# (an abort left for an earlier job of this id must not kill this one: arq #485), "1" if the
# answer waits for replicas (DURABLE), the ids of the jobs it runs after (space-separated, or
# empty: queue.dependencies), how long arq keeps a job (ms), "1" if the job is due now (it may
# be handed to an idle worker), then, with a claim, its value ("<fingerprint> <job id>") and its
# lifetime (s).
# Returns {"created"}, {"taken"} (the id is queued, running, or its result is kept),
# {"claimed", earlier claim}: the key's earlier request, a replay or a conflict, whose job exists,
# or {"unknown", id} / {"crowded", id}: a job it was to run after has no record, or has all the
# dependents it may have (nothing written).
ENQUEUE = (
    RECORD
    + DURABLE
    + DEPENDENCIES
    + HAND_OFF
    + """
local function mine()
    return redis.call('HGET', KEYS[1], 'enqueued_at') == cjson.decode(ARGV[4]).set.enqueued_at
end
local durable = ARGV[12] == '1'
local claim = KEYS[11]
if claim then
    local earlier = redis.call('GET', claim)
    if earlier then
        if earlier == ARGV[16] and mine() then
            if durable then rewrite(KEYS[1], 'enqueued_at') end
            return {'created'}
        end
        -- A claim whose job has no record promises nothing (one left by a version that claimed
        -- and wrote in two steps): this request takes the key. The record's key is this job's
        -- with the other id (read, not declared: the job id comes from the claim).
        local earlier_id = string.match(earlier, ' (.+)$')
        local records = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[6])
        if earlier_id == nil or redis.call('EXISTS', records .. earlier_id) == 1 then
            if durable then redis.call('SET', claim, earlier, 'KEEPTTL') end
            return {'claimed', earlier}
        end
    end
end
if redis.call('EXISTS', KEYS[4], KEYS[5]) > 0 then
    if mine() then
        if durable then rewrite(KEYS[1], 'enqueued_at') end
        return {'created'}
    end
    return {'taken'}
end
local parents = ARGV[13]
if parents ~= '' then
    local missing, crowded = unknown_parent(string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[6]), parents)
    if missing then return {crowded and 'crowded' or 'unknown', missing} end
end
-- The job first: Redis refuses a command that takes memory when memory is full only as a
-- script's first write (after one it lets the rest through, as it cannot stop halfway), and
-- PSETEX is such a command (DEL or ZREM are not).
redis.call('PSETEX', KEYS[4], ARGV[8], ARGV[7])
if ARGV[11] == '1' then redis.call('ZREM', KEYS[7], ARGV[6]) end
record(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
if claim then redis.call('SET', claim, ARGV[16], 'EX', ARGV[17]) end
if parents ~= '' then
    -- Into its queue only when its parents let it (which may be now).
    local at = cjson.decode(ARGV[4]).set.enqueued_at
    attach(KEYS[1], ARGV[6], parents, KEYS[3], ARGV[1], ARGV[2], ARGV[5], at, ARGV[14])
    return {'created'}
end
redis.call('ZADD', KEYS[6], ARGV[9], ARGV[6])
-- Due now: to an idle worker, if one registered; the other workers need no notice then.
if ARGV[15] == '1' then
    local job_id, score, job = ARGV[6], ARGV[9], ARGV[7]
    if hand_off(KEYS[10], KEYS[8], KEYS[9], KEYS[7], ARGV[10], job_id, score, job) then
        return {'created'}
    end
end
-- Deferred jobs too: an idle worker then times its next poll to the job's due time. The notice
-- names the job: a worker with a free slot claims it without reading the queue first.
redis.call('PUBLISH', ARGV[10], ARGV[6])
return {'created'}
"""
)

# A batch (POST /jobs/batch) as one command: every job's record, arq's job and its place in its
# queue, then one wake notice per queue. All or none, as ENQUEUE: the first write is the first
# job's PSETEX, which a full or read-only Redis refuses before anything is written.
# The jobs travel as one msgpack argument, their keys built here from their ids: redis-py packs
# each argument in Python, and a MULTI of three commands a job (then eleven arguments a job in one
# script call) cost the web more than everything else in the request.
# The ids are new (uuid4), so a job that already has a record is this batch's own: a command
# redis-py sent again after a timeout finds its first execution's jobs and writes nothing twice.
# KEYS: the index of jobs (RECORD's third key), then the queues.
# ARGV: retention, events kept, the records' key prefix, the event streams' key suffix, arq's job
# key prefix, the jobs: msgpack [[change (JSON), time (ms), id, serialized job, time to live (ms),
# score (ms), queue (its position in KEYS), the ids it runs after (space-separated, or empty)],
# ...], "1" if the answer waits for replicas, the ids of jobs before the batch that its jobs run
# after (checked first; once for each job naming one), how long arq keeps a job (ms); then the
# wake channels.
# Returns "created", "again" for a batch already written, or {"unknown" or "crowded", id}
# (nothing written: see ENQUEUE).
# A job runs after existing jobs or earlier ones of the batch, written before it: no cycle.
ENQUEUE_MANY = (
    RECORD
    + DURABLE
    + DEPENDENCIES
    + """
local jobs = cmsgpack.unpack(ARGV[6])
if redis.call('EXISTS', ARGV[3] .. jobs[1][3]) == 1 then
    if ARGV[7] == '1' then rewrite(ARGV[3] .. jobs[1][3], 'enqueued_at') end
    return 'again'
end
local missing, crowded = unknown_parent(ARGV[3], ARGV[8])
if missing then return {crowded and 'crowded' or 'unknown', missing} end
for _, job in ipairs(jobs) do
    local id = job[3]
    local record_key = ARGV[3] .. id
    redis.call('PSETEX', ARGV[5] .. id, job[5], job[4])
    record(record_key, record_key .. ARGV[4], KEYS[1], ARGV[1], ARGV[2], '1', job[1], job[2], id)
    if job[8] == '' then
        redis.call('ZADD', KEYS[job[7]], job[6], id)
    else
        local at = cjson.decode(job[1]).set.enqueued_at
        attach(record_key, id, job[8], KEYS[1], ARGV[1], ARGV[2], job[2], at, ARGV[9])
    end
end
for i = 10, #ARGV do redis.call('PUBLISH', ARGV[i], '') end
return 'created'
"""
)
