"""Wake-on-enqueue: the channel a queue's idle workers listen on.

The web publishes an empty notice on it after queueing a job that may start now; a worker waiting
between polls (worker.wake) starts at once instead of at its next poll. A notice is only a hint,
never the job: a worker that misses one (restarting, Redis blip) finds the job at its next poll,
and jobs from plain arq clients, which publish nothing, run at the poll delay as with arq itself.
"""


def wake_channel(queue_name: str) -> str:
    return f"{queue_name}:wake"
