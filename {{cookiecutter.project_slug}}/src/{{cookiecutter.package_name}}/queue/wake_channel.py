"""Wake-on-enqueue: the channel a queue's idle workers listen on.

The web publishes a notice on it as it queues a job, the job's id (empty where it queues several,
or where a job is freed by its parents or a limit); a worker waiting between polls
(worker.process) claims the named job at once if it has a free slot and the job is due, and
otherwise polls at once, and starts the job, or, for a deferred one, times its next poll to the
moment the job is due. A notice is only a hint, never the job: a worker that misses one
(restarting, Redis blip) finds the job at its next poll, and jobs from plain arq clients, which
publish nothing, run at the poll delay as with arq itself.
"""


def wake_channel(queue_name: str) -> str:
    return f"{queue_name}:wake"
