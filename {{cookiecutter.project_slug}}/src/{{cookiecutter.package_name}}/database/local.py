"""A PostgreSQL of this machine's own, for `dev` and the integration tests: the server program
from PATH (else where PostgreSQL's packages put it), a fresh cluster in a temporary directory, a
free port, gone at exit. Always a real server: never SQLite standing in for PostgreSQL.
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

USER = "app"
DATABASE = "app"
SEARCHED = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu (not on PATH there)
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/opt/homebrew/opt/postgresql@*/bin",  # macOS, Homebrew
    "/usr/local/opt/postgresql@*/bin",
    "/Applications/Postgres.app/Contents/Versions/latest/bin",
)
NOT_FOUND = (
    "no PostgreSQL server program (initdb, postgres): install PostgreSQL (apt-get install "
    "postgresql, brew install postgresql) or set DATABASE_URL to a server you have"
)


class NoPostgresError(RuntimeError):
    pass


def server_directory() -> Path | None:
    """The folder holding `initdb` and `postgres`: PATH's, pg_config's, or the newest of the
    packages' usual places."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(  # noqa: S603 - a program found on PATH, no shell
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        folder = Path(result.stdout.strip())
        if result.returncode == 0 and (folder / "initdb").exists():
            return folder
    candidates = [Path(path) for pattern in SEARCHED for path in glob.glob(pattern)]
    candidates = [path for path in candidates if (path / "initdb").exists()]
    return max(candidates, key=lambda path: version_of(path), default=None)


def version_of(folder: Path) -> tuple[int, ...]:
    digits = "".join(ch if ch.isdigit() else " " for ch in str(folder))
    return tuple(int(part) for part in digits.split())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_user() -> str | None:
    """PostgreSQL refuses to run as root (a container's user, often): then it runs as the
    `postgres` account, else `nobody`. None: as whoever runs this."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise NoPostgresError("running as root, and no unprivileged account to run PostgreSQL as")


@contextmanager
def local_postgres(started: Callable[[int], None] = lambda _pid: None) -> Iterator[str]:
    """The URL of a new PostgreSQL server (user and database `app`, no password, 127.0.0.1 only)
    for as long as the block runs; stopped and deleted after. Its process id goes to `started`."""
    folder = server_directory()
    if folder is None:
        raise NoPostgresError(NOT_FOUND)
    user = server_user()
    # Not under the caller's temporary folder: that may be private to root, and a socket's path
    # is limited to about 100 characters.
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        if user is not None:
            shutil.chown(root, user)
        data, log = str(root / "data"), root / "server.log"
        subprocess.run(  # noqa: S603 - PostgreSQL's own programs, fixed arguments, no shell
            [str(folder / "initdb"), "-D", data, "-U", USER, "-A", "trust", "-E", "UTF8", "-N"],
            check=True,
            capture_output=True,
            user=user,
        )
        port = free_port()
        with open(log, "wb") as out:
            process = subprocess.Popen(  # noqa: S603 - as above
                [
                    *(str(folder / "postgres"), "-D", data, "-p", str(port), "-k", str(root)),
                    *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
                    *("-c", "full_page_writes=off", "-c", "synchronous_commit=off"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to pass on
                user=user,
            )
        started(process.pid)
        wait_for(folder, port, process, log)
        subprocess.run(  # noqa: S603 - as above
            [str(folder / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # "fast" shutdown: clients are disconnected
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(root, ignore_errors=True)


def wait_for(
    folder: Path, port: int, process: "subprocess.Popen[bytes]", log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    ready = [str(folder / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", USER]
    while subprocess.run(ready, check=False).returncode != 0:  # noqa: S603 - as above
        if process.poll() is not None or time.monotonic() > deadline:
            raise NoPostgresError(f"PostgreSQL did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
