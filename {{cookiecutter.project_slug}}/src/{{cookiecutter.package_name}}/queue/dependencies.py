"""Jobs that run after others (`after`): the Lua that holds a dependent back, frees it when its
last parent succeeds, and frees it doomed when one fails or is cancelled.

A dependent is written like any job (its record, arq's job) but not put in its queue: its record
says deferred, waiting for "parents", and counts the parents not yet succeeded (`pending`); each
parent's `<record>:children` set names it. Every script that ends a parent settles its
children (`settle_children`) in the same script: the ledger's FINISH (the worker's success inside
arq's end-of-job transaction, a dead letter, the worker's cancel), SETTLE (an ending arq made
itself, in that transaction too) and CANCEL (the web's cancel of a job not yet claimed). So a
parent's end and its children's release are written together or not at all:

- succeeded: it counts once for the child (`done:<parent>`: a parent that ran twice, at least
  once, counts once), and the last one puts the child in its queue, due now, with a wake notice
  (the child's worker reads the parents' results from their records as it starts: nothing is
  copied, so a large result does not grow Redis by its number of children);
- failed or cancelled: the child goes into its queue at once, marked `doomed`; the worker that
  takes it ends it cancelled, with the reason, through the ordinary path of a job's end (its
  record, its webhook, and in turn its own children), instead of it waiting forever.

A dependent whose parents all succeeded already when it is enqueued goes into its queue at once;
one with a parent already failed or cancelled, doomed. The check that every parent exists (and
has room for one more child, MAX_CHILDREN) is the script's first step, before any write: a 422,
nothing written. A waiting dependent's record, events and job, and its parents' children sets,
do not expire while it waits: it is never dropped for waiting long, and a cancel ends it.

The records' key prefix is the hash key minus the job id (every record is `<prefix><id>`).
"""

from collections.abc import Sequence

from arq.constants import job_key_prefix

from .wake_channel import wake_channel

MAX_PARENTS = 100
"""Parents one job may wait for: each is read (and its children set written) by the enqueue."""

MAX_CHILDREN = 1000
"""Dependents one job may have: its end frees them all in one script, which blocks Redis for its
length (about 35 us a dependent)."""

DEPENDENCIES = """
-- Into its queue, due now: the job may start (or, doomed, be ended by a worker). Its record,
-- events and job expire again from now on (they do not while it waits). Returns its queue, whose
-- workers the caller wakes (once per queue, however many jobs it frees).
local function set_free(hash, child, index, retention, kept, now_ms, at, expires_ms)
    redis.call('HDEL', hash, 'pending')
    local queue = redis.call('HGET', hash, 'queue')
    redis.call('PEXPIRE', '__JOB_PREFIX__' .. child, expires_ms)
    redis.call('ZADD', queue, math.floor(tonumber(now_ms)), child)
    local change = cjson.encode({
        drop = {'wait_reason'},
        set = {state = 'queued'},
        event = {kind = 'state', state = 'queued', at = at},
    })
    record(hash, hash .. ':events', index, retention, kept, '0', change, now_ms, child)
    return queue
end
-- A parent ended: its waiting children learn it (see the module's docstring). A parent that
-- succeeded counts once per child (`done:<parent>`), however often its end is written.
local function settle_children(parent_hash, parent, state, index, retention, kept, now_ms, at,
                               expires_ms)
    local children_key = parent_hash .. ':children'
    local children = redis.call('SMEMBERS', children_key)
    if #children == 0 then return end
    -- Kept for reading (`children`) as long as the parent's record.
    redis.call('EXPIRE', children_key, retention)
    local records = string.sub(parent_hash, 1, #parent_hash - #parent)
    local woken = {}
    for _, child in ipairs(children) do
        local hash = records .. child
        if redis.call('HEXISTS', hash, 'pending') == 1 then
            local free = true
            if state == 'succeeded' then
                free = false
                if redis.call('HSETNX', hash, 'done:' .. parent, '1') == 1 then
                    free = redis.call('HINCRBY', hash, 'pending', -1) <= 0
                end
            else
                redis.call('HSET', hash, 'doomed', parent .. ' ' .. state)
            end
            if free then
                woken[set_free(hash, child, index, retention, kept, now_ms, at, expires_ms)] = true
            end
        end
    end
    for queue in pairs(woken) do redis.call('PUBLISH', queue .. '__WAKE__', '') end
end
-- The first of `parents` (ids, space-separated, once for each job that names it) without a
-- record, or nil; or, with `crowded` true, the first that these jobs would give more children
-- than it may have. Reads only. A key of another type is no record: `<id>:events` names a job's
-- event stream, not a job.
local function unknown_parent(records, parents)
    local named = {}
    for parent in string.gmatch(parents, '%S+') do
        local key = records .. parent
        if redis.call('TYPE', key).ok ~= 'hash' then return parent, false end
        named[parent] = (named[parent] or 0) + 1
        if redis.call('SCARD', key .. ':children') + named[parent] > __MAX_CHILDREN__ then
            return parent, true
        end
    end
    return nil, false
end
-- A dependent just written (its record says it waits for its parents): wait, or go now. While it
-- waits nothing of it expires: it waits as long as its parents take (or until cancelled).
local function attach(hash, child, parents, index, retention, kept, now_ms, at, expires_ms)
    local records = string.sub(hash, 1, #hash - #child)
    local pending = 0
    local doomed = false
    for parent in string.gmatch(parents, '%S+') do
        local parent_hash = records .. parent
        local state = redis.call('HGET', parent_hash, 'state')
        if state == 'failed' or state == 'cancelled' then
            if not doomed then redis.call('HSET', hash, 'doomed', parent .. ' ' .. state) end
            doomed = true
        elseif state ~= 'succeeded' then
            local children = parent_hash .. ':children'
            redis.call('SADD', children, child)
            redis.call('PERSIST', children)  -- until the parent's end settles it
            pending = pending + 1
        end
    end
    if pending > 0 and not doomed then
        redis.call('HSET', hash, 'pending', pending)
        redis.call('PERSIST', hash)
        redis.call('PERSIST', hash .. ':events')
        redis.call('PERSIST', '__JOB_PREFIX__' .. child)
    else
        local queue = set_free(hash, child, index, retention, kept, now_ms, at, expires_ms)
        redis.call('PUBLISH', queue .. '__WAKE__', '')
    end
end
"""

DEPENDENCIES = (
    DEPENDENCIES.replace("__JOB_PREFIX__", job_key_prefix)
    .replace("__WAKE__", wake_channel(""))
    .replace("__MAX_CHILDREN__", str(MAX_CHILDREN))
)

WAITING_FOR_PARENTS = "parents"
"""A dependent's `waiting.reason` while its parents run."""


def doomed_by(mark: str) -> tuple[str, str]:
    """The parent that ended a dependent, and how it ended ("failed" or "cancelled"), from the
    record's `doomed` mark."""
    parent, _, state = mark.rpartition(" ")
    return parent, state


def in_batch(parent: str, ids: Sequence[str]) -> str:
    """A parent as a batch names it: `#<index>` is the batch's job at that index (the API checks
    that it comes earlier), any other an existing job's id."""
    return ids[int(parent[1:])] if parent.startswith("#") else parent
