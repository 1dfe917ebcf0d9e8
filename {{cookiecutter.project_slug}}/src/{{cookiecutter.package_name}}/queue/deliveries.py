"""A job's webhook delivery (webhooks.py), queued as a job of the service's own task
`deliver_webhook` with the writes that end the job: the worker's end-of-job transaction
(worker.job_end), or the web's cancel of a job that never started (the ledger's CANCEL). Its
id is the job's with `:webhook:<enqueue time, ms>` (no client id holds a `:`), on the job's own
queue and Redis, so the delivery of a bulk job stays on the bulk queue's server."""

import time
from dataclasses import dataclass
from datetime import datetime

from arq.constants import job_key_prefix
from arq.jobs import serialize_job
from redis.asyncio.client import Pipeline

from .serializer import serialize
from .wake_channel import wake_channel

DELIVERY_TASK = "deliver_webhook"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What to POST where, once the job's end is written, and the message's id."""

    url: str
    body: str
    message_id: str


def delivery_id(job_id: str, enqueued: datetime | None) -> str:
    """The id of a job's delivery, and of its message (`webhook-id`): the same for every try
    of that job (a job run twice, at least once, announces its end once to a receiver that
    drops repeats), another for a later job that reuses the id."""
    stamp = "" if enqueued is None else f":{int(enqueued.timestamp() * 1000)}"
    return f"{job_id}:webhook{stamp}"


def delivery_job(delivery: Delivery) -> bytes:
    """The delivery as arq's job of DELIVERY_TASK, enqueued now."""
    now = int(time.time() * 1000)
    kwargs = {"url": delivery.url, "message_id": delivery.message_id, "body": delivery.body}
    return serialize_job(DELIVERY_TASK, (), kwargs, None, now, serializer=serialize)


def queue_delivery(pipe: Pipeline, queue_name: str, delivery: Delivery, expires_ms: int) -> None:
    """The delivery's job, queued in `pipe` (arq's own writes for a job, plain commands: no
    script a restarted Redis could have lost). A delivery already waiting is left as it is."""
    message_id = delivery.message_id
    now = int(time.time() * 1000)
    payload = delivery_job(delivery)
    pipe.set(job_key_prefix + message_id, payload, px=expires_ms, nx=True)
    pipe.zadd(queue_name, {message_id: now}, nx=True)
    pipe.publish(wake_channel(queue_name), "")
