"""The end of a job in Redis: arq's result and the job's record, in one transaction.

arq ends a job with a MULTI/EXEC of its own (the result, the queue entry, the claim and retry
keys); the job's record said "succeeded" one round trip earlier. Here the record's write (the
ledger hands it over: queue.ledger.SuccessSink) rides in arq's transaction: a reader never sees
the record finished without arq's result, and the worker pays one round trip per job less.
"""

import logging

from arq.connections import ArqRedis
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.utils import to_ms
from redis.exceptions import NoScriptError

from ..queue.deliveries import Delivery, queue_delivery
from ..queue.ledger import RecordWrite

log = logging.getLogger(__name__)


async def end_job(
    pool: ArqRedis,
    queue_name: str,
    job_id: str,
    finish: bool,
    result_data: bytes | None,
    result_timeout_s: float | None,
    keep_result_forever: bool,
    incr_score: int | None,
    keep_in_progress: float | None,
    record: RecordWrite | None,
    delivery: Delivery | None = None,
) -> None:
    """arq 0.28's Worker.finish_job (the same writes, arguments in its order), `record`, and
    the job's webhook `delivery` (queue.deliveries), queued with its end or not at all."""
    async with pool.pipeline(transaction=True) as tr:
        delete_keys = []
        in_progress_key = in_progress_key_prefix + job_id
        if keep_in_progress is None:
            delete_keys.append(in_progress_key)
        else:
            tr.pexpire(in_progress_key, to_ms(keep_in_progress) or 0)
        if finish:
            if result_data:
                expire = None if keep_result_forever else result_timeout_s
                tr.set(result_key_prefix + job_id, result_data, px=to_ms(expire))
            delete_keys += [retry_key_prefix + job_id, job_key_prefix + job_id]
            tr.zrem(abort_jobs_ss, job_id)
            tr.zrem(queue_name, job_id)
        elif incr_score:
            tr.zincrby(queue_name, incr_score, job_id)
        if delete_keys:
            tr.delete(*delete_keys)
        if delivery is not None:
            queue_delivery(tr, queue_name, delivery, pool.expires_extra_ms)
        if record is not None:
            record.queue_in(tr)
        try:
            replies = await tr.execute()
        except NoScriptError:
            if record is None:
                raise
            # Redis lost the ledger's script (a restart, a failover): arq's writes went through,
            # the record's alone failed. Sent alone, the script is loaded on the way.
            replies = [await record.send()]
    if record is not None and replies[-1] == -1:  # (ledger.SUCCEED)
        log.error("job %s ended, but its record's keys hold another type: not recorded", job_id)
