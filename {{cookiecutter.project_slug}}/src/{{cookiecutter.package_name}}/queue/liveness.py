"""What a worker's heartbeat says, and where it is found: shared by the worker that writes it
(worker.heartbeat) and the web that lists workers (queue.arq_queue), which never import each other.

Each worker refreshes its own key `<queue>:worker:<id>` with a short TTL; a sorted set
`<queue>:workers` lists those keys by last beat, so readers find the live workers with one bounded
read instead of scanning keys.
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from .base import WorkerInfo


def registry_key(queue_name: str) -> str:
    return f"{queue_name}:workers"


def encode_beat(
    worker_id: str, queue_name: str, at: float, running: int, cron: Mapping[str, datetime]
) -> str:
    next_runs = {name: moment.isoformat() for name, moment in cron.items()}
    beat = {
        "worker": worker_id,
        "queue": queue_name,
        "at": at,
        "running": running,
        "cron": next_runs,
    }
    return json.dumps(beat)


def decode_beat(raw: bytes | str) -> WorkerInfo | None:
    """The beat's content; None for a value this version cannot read (an older worker's)."""
    try:
        beat = json.loads(raw)
        return WorkerInfo(
            worker_id=str(beat["worker"]),
            queue=str(beat["queue"]),
            last_beat=datetime.fromtimestamp(float(beat["at"]), tz=UTC),
            running=int(beat.get("running", 0)),
            cron={name: datetime.fromisoformat(at) for name, at in beat.get("cron", {}).items()},
        )
    except (ValueError, KeyError, TypeError):
        return None
