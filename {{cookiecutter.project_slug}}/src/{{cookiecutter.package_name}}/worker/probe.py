"""`python -m {{ cookiecutter.package_name }}.worker.probe [default|bulk]`: exit 0 if THIS worker beat recently.

The compose health check and the Kubernetes probes of the worker run it. It reads the worker's
proof of life, a local file its heartbeat refreshes (worker.heartbeat), and asks Redis nothing:

- a worker whose loops turn passes, also while Redis is away, stalled or full. Restarting it would
  not bring Redis back; it would only drop the jobs it holds and, with every worker failing at
  once, turn an outage into a crash loop. The worker waits the outage out and resumes by itself;
  the message says what it last saw of Redis.
- a worker whose event loop is blocked, or whose poll loop is stuck, stops refreshing the proof
  and fails after three beats: a restart does fix that.

It imports the settings only, not redis-py, the tasks or arq: cheap enough to run every few seconds.
"""

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import get_args

from ..settings import QueueKey, Settings
from .heartbeat import host_worker, key_ttl, proof_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Exit 0 if this host's worker beat recently.")
    parser.add_argument("queue", nargs="?", default="default", choices=get_args(QueueKey))
    queue: QueueKey = parser.parse_args(argv).queue
    settings = Settings()
    key, proof = host_worker(settings, queue), proof_path(settings, queue)
    try:
        age = time.time() - proof.stat().st_mtime
    except FileNotFoundError:
        print(f"unhealthy: no recent heartbeat of {key} (no {proof})", file=sys.stderr)
        return 1
    if age > key_ttl(settings):
        print(
            f"unhealthy: no recent heartbeat of {key}: the last one is {age:.0f} s old "
            f"(limit {key_ttl(settings)} s); the worker is stuck or gone",
            file=sys.stderr,
        )
        return 1
    try:
        state = json.loads(proof.read_text())
        error, ok_at = state.get("redis_error"), state.get("redis_ok_at")
    except (OSError, ValueError, AttributeError):  # replaced or half-made meanwhile: age counts
        error = ok_at = None
    if error:
        since = (
            f"last answered {datetime.fromtimestamp(ok_at, tz=UTC):%Y-%m-%d %H:%M:%S} UTC"
            if isinstance(ok_at, int | float)
            else "not answered since the worker started"
        )
        print(f"healthy: {key} (waiting for Redis, {since}: {error})")
    else:
        print(f"healthy: {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
