"""Load for the fault tests: jobs submitted to the web all along a fault, then every accepted
job followed until it ends."""

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Load:
    """Jobs submitted to the web, a few a second, on both queues, until stopped."""

    client: httpx.AsyncClient
    accepted: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    running: bool = True

    async def run(self) -> None:
        jobs = [
            {"task": "word_count", "args": {"text": "one two three"}},
            {"task": "render_report", "args": {"pages": 3, "seconds_per_page": 0.3}},
        ]
        while self.running:
            body = jobs[sum(self.statuses.values()) % 2]
            response = await self.client.post("/jobs", json=body)
            self.statuses[response.status_code] += 1
            if response.status_code == 202:
                self.accepted.append(response.headers["location"])
            else:
                assert response.status_code == 503, response.text  # never a 500
                assert response.headers.get("retry-after"), response.text
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def load_on(client: httpx.AsyncClient) -> Any:
    load = Load(client)
    task = asyncio.create_task(load.run())
    try:
        yield load
    finally:
        load.running = False
        await task


async def settle(client: httpx.AsyncClient, locations: list[str], within: float) -> dict[str, str]:
    """The state of each accepted job once all have finished, or at the deadline: "lost" for a
    job the service does not know (404); a 503 (Redis not answering that read yet, as the web
    may say for a moment after an outage) is asked again, and stays "unavailable" only if it
    lasts to the deadline."""
    states: dict[str, str] = {}
    pending = list(locations)
    deadline = time.monotonic() + within
    while pending and time.monotonic() < deadline:
        for location in list(pending):
            response = await client.get(location)
            if response.status_code == 200:
                states[location] = response.json()["state"]
            else:
                assert response.status_code in (404, 503), response.text
                states[location] = "lost" if response.status_code == 404 else "unavailable"
            if states[location] in {"succeeded", "failed", "cancelled", "lost"}:
                pending.remove(location)
        await asyncio.sleep(0.5)
    return states


def summary(load: Load, outcome: Counter[str]) -> str:
    """A fault test's figures: the jobs accepted and refused, and how the accepted ones ended."""
    return (
        f"{len(load.accepted)} accepted, {load.statuses[503]} refused with 503; "
        f"{outcome['succeeded']} succeeded, {outcome['lost']} lost, "
        f"{len(load.accepted) - outcome['succeeded'] - outcome['lost']} other"
    )
