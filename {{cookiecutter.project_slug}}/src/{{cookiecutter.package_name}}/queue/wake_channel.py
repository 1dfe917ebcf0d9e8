"""Wake-on-enqueue: the channel a queue's idle workers listen on.

The web publishes an empty notice on it after queueing a job; a worker waiting between polls
(worker.process) polls at once, and starts the job, or, for a deferred one, times its next poll to
the moment the job is due. A notice is only a hint,
never the job: a worker that misses one (restarting, Redis blip) finds the job at its next poll,
and jobs from plain arq clients, which publish nothing, run at the poll delay as with arq itself.
"""


def wake_channel(queue_name: str) -> str:
    return f"{queue_name}:wake"
