"""Safe by default, against real Redis and a real worker: a pickle planted in Redis is refused,
not executed, by the worker and by the web's status reads."""

import os
import pickle
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import RunWorker


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


async def test_a_planted_pickle_job_is_refused_by_the_worker_and_the_web(
    settings: Settings, client: httpx.AsyncClient, run_worker: RunWorker, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    job_id = f"planted-{uuid.uuid4().hex}"
    # What an attacker with write access to Redis would plant for a pickling arq worker.
    payload = pickle.dumps(
        {"t": 1, "f": "word_count", "a": (), "k": {"text": Exploit(marker)}, "et": 0}
    )
    async with Redis.from_url(str(settings.redis_url)) as redis:
        await redis.set(f"arq:job:{job_id}", payload, ex=60)
        # Scored as arq scores a job that is due now (a score of 0 reads as "finished" to arq).
        await redis.zadd(settings.queue_name, {job_id: int(time.time() * 1000)})

        before = (await client.get(f"/jobs/{job_id}")).json()
        worker = await run_worker()
        after = (await client.get(f"/jobs/{job_id}")).json()
        await redis.delete(f"arq:job:{job_id}", f"arq:result:{job_id}", f"arq:retry:{job_id}")

    assert not marker.exists(), "the pickle payload ran"
    assert worker.jobs_failed == 1
    assert before["state"] == "failed"
    assert before["error"]["type"] == "DeserializationError"
    assert after["state"] == "failed"


async def test_a_planted_pickle_result_is_refused_by_the_web(
    settings: Settings, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    job_id = f"planted-{uuid.uuid4().hex}"
    async with Redis.from_url(str(settings.redis_url)) as redis:
        await redis.set(f"arq:result:{job_id}", pickle.dumps({"r": Exploit(marker)}), ex=60)
        response = await client.get(f"/jobs/{job_id}")
        await redis.delete(f"arq:result:{job_id}")

    assert not marker.exists(), "the pickle payload ran"
    assert response.status_code == 200
    assert response.json()["state"] == "failed"
    assert response.json()["error"]["type"] == "DeserializationError"
