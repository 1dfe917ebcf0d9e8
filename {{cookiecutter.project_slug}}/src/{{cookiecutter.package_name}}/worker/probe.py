"""`python -m {{ cookiecutter.package_name }}.worker.probe [default|bulk]`: exit 0 if THIS worker beat recently.

The compose health check of the worker runs it. It imports the settings and redis-py only, not the
tasks or arq, so it stays cheap enough to run every few seconds.
"""

import argparse
import sys
from typing import get_args

from redis import Redis
from redis.exceptions import RedisError

from ..settings import QueueKey, Settings
from .heartbeat import worker_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Exit 0 if this host's worker beat recently.")
    parser.add_argument("queue", nargs="?", default="default", choices=get_args(QueueKey))
    queue: QueueKey = parser.parse_args(argv).queue
    settings = Settings()
    key = worker_key(settings, queue)
    try:
        with Redis.from_url(
            str(settings.redis_url), socket_timeout=2, socket_connect_timeout=2
        ) as redis:
            alive = bool(redis.exists(key))
    except (RedisError, OSError) as exc:
        print(f"unhealthy: Redis did not answer: {exc}", file=sys.stderr)
        return 1
    if not alive:
        print(f"unhealthy: no recent heartbeat at {key}", file=sys.stderr)
        return 1
    print(f"healthy: {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
