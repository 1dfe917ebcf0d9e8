"""Wake-on-enqueue: the channel a queue's idle workers listen on, and the hand-off of a job to
one idle worker.

The web publishes a notice on the queue's channel as it queues a job, the job's id (empty where it
queues several, or where a job is freed by its parents or a limit); a worker waiting between polls
(worker.process) claims the named job at once if it has a free slot and the job is due, and
otherwise polls at once, and starts the job, or, for a deferred one, times its next poll to the
moment the job is due. A notice is only a hint, never the job: a worker that misses one
(restarting, Redis blip) finds the job at its next poll, and jobs from plain arq clients, which
publish nothing, run at the poll delay as with arq itself.

Hand-off: a worker with nothing to run registers itself in the queue's set of idle workers, and
listens on a channel of its own too. The enqueue script (queue.enqueue) hands a job due now to
such a worker instead of notifying every worker: in the same script it takes the worker out of the
set, sends the job itself on that worker's channel and claims it for the worker, so that the
worker starts it as the message arrives, with no Redis round trip of its own (at idle, a claim's
round trip was a sixth of a job's latency). Redis says how many subscribers got the message: none
means the worker is gone (its connection closed), and the script tries the next one, or falls
back to the notice. The job is claimed for the worker as its own claims are (arq's in-progress
key, for the job timeout and 10 s): a worker that got the message but never takes the job
(frozen, or its connection cut while the message was on its way) holds it that long, as a worker
frozen or killed right after claiming a job does, and then any worker's poll takes it.
"""

from dataclasses import dataclass


def wake_channel(queue_name: str) -> str:
    return f"{queue_name}:wake"


def idle_workers_key(queue_name: str) -> str:
    """The queue's registered idle workers: a sorted set of `handoff_member`s, by the second
    each registered (the latest first, to the second: its connection is the likeliest to be
    alive)."""
    return f"{queue_name}:idle-workers"


def handoff_channel(queue_name: str, token: str) -> str:
    """The channel of one worker, named by its token: jobs handed to it."""
    return f"{wake_channel(queue_name)}:{token}"


def handoff_member(token: str, lifetime_ms: int, aborts: bool) -> str:
    """A worker's entry in the idle set: its token, its claims' full lifetime (ms), and whether
    it takes aborts (as arq's run_job does when it allows them)."""
    return f"{token} {lifetime_ms} {int(aborts)}"


@dataclass(frozen=True)
class HandOff:
    """A job handed to a worker, as the enqueue script sends it: claimed for the worker, its try
    counted, an abort waiting for it taken."""

    job_id: str
    score: int
    """When the job was due (ms), as arq's run_job takes it."""
    job: bytes
    """arq's serialized job."""
    job_try: int
    aborted: bool
    sent_ms: int
    """Redis's clock when the message was sent (ms)."""

    @classmethod
    def parse(cls, data: bytes) -> "HandOff":
        """`<sent ms> <try> <aborted> <score> <length of the id>\\n<id><job>`: the job last, as
        it is, and the id by its length (both may hold any byte)."""
        head, _, rest = data.partition(b"\n")
        sent_ms, job_try, aborted, score, length = (int(word) for word in head.split())
        return cls(
            job_id=rest[:length].decode(),
            score=score,
            job=rest[length:],
            job_try=job_try,
            aborted=aborted == 1,
            sent_ms=sent_ms,
        )
