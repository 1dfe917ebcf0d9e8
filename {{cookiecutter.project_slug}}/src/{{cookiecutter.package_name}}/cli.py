"""`{{ cookiecutter.project_slug }}`: the project's command (also `python -m {{ cookiecutter.package_name }}`).

    {{ cookiecutter.project_slug }} worker                  a worker for the default queue (short jobs)
    {{ cookiecutter.project_slug }} worker --queue bulk     a worker for the bulk queue (long jobs)
    {{ cookiecutter.project_slug }} worker --burst          run what is queued, then exit
    {{ cookiecutter.project_slug }} dev                     web, workers and Redis on this machine, reloading

The web app runs under uvicorn (see the Dockerfile's CMD).
"""

import argparse
from collections.abc import Sequence
from typing import get_args

from .settings import QueueKey
from .storage import add_commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="{{ cookiecutter.project_slug }}")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser(
        "worker", help="run a worker for one queue (SIGTERM drains it: see STOP_GRACE_PERIOD)"
    )
    worker.add_argument("--queue", choices=get_args(QueueKey), default="default")
    worker.add_argument(
        "--burst", action="store_true", help="run the jobs that are queued, then exit"
    )
    dev = commands.add_parser(
        "dev", help="run web, a worker per queue and (if none answers) Redis, reloading on changes"
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    add_commands(commands)  # the database's, if the project has one (storage.py)
    args = parser.parse_args(argv)
    if hasattr(args, "run"):
        return int(args.run(args))
    # Imported here: arq and the tasks load only for the commands that need them.
    if args.command == "dev":
        from .dev import run_dev

        return run_dev(args.host, args.port)
    from .worker.process import run_worker

    run_worker(args.queue, burst=args.burst)
    return 0
