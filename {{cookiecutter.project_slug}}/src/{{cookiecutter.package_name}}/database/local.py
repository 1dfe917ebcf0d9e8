"""A PostgreSQL of this machine's own, for `dev` and the integration tests: the server program
from PATH (else where PostgreSQL's packages put it), a fresh cluster in a temporary directory, a
free port, gone at exit. Always a real server: never SQLite standing in for PostgreSQL.
"""

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..dev import free_port

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


def server_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root (a container's user, often): then it runs as the
    `postgres` account, else `nobody`, with that account's group only. None: as whoever runs
    this."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise NoPostgresError("running as root, and no unprivileged account to run PostgreSQL as")


def checked(
    command: list[str],
    what: str,
    user: pwd.struct_passwd | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run one of PostgreSQL's programs (as `user`: its uid and gid, no other group); its own
    words, not only a status, if it fails."""
    result = subprocess.run(  # noqa: S603 - PostgreSQL's own programs, fixed arguments
        command,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
    )
    if result.returncode != 0:
        raise NoPostgresError(f"{what} failed: {result.stderr.strip() or result.stdout.strip()}")


@contextmanager
def local_postgres(started: Callable[[int], None] = lambda _pid: None) -> Iterator[str]:
    """The URL of a new PostgreSQL server (user and database `app`, a password of its own,
    127.0.0.1 only) for as long as the block runs; stopped and deleted after. Its process id
    goes to `started`.

    A password, not `trust`: any account of this machine could otherwise connect, as a
    superuser that can run programs (COPY ... TO PROGRAM) as the server's account."""
    folder = server_directory()
    if folder is None:
        raise NoPostgresError(NOT_FOUND)
    user = server_user()
    # Under /tmp when the server runs as another account: the caller's TMPDIR may be private to
    # root. (Short too: a socket's path is limited to about 100 characters.)
    shared = "/tmp" if user is not None else None  # noqa: S108 - mkdtemp: a new private folder
    root = Path(tempfile.mkdtemp(prefix="pg-", dir=shared))
    password = secrets.token_urlsafe(24)
    process: subprocess.Popen[bytes] | None = None
    try:
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        data, log = str(root / "data"), root / "server.log"
        password_file = root / "password"
        password_file.write_text(password)
        if user is not None:
            os.chown(password_file, user.pw_uid, user.pw_gid)
        checked(
            [
                *(str(folder / "initdb"), "-D", data, "-U", USER, "-E", "UTF8", "-N"),
                *("--auth-local=scram-sha-256", "--auth-host=scram-sha-256"),
                *("--pwfile", str(password_file)),
            ],
            "initdb",
            user,
        )
        password_file.unlink()
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
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        started(process.pid)
        wait_for(folder, port, process, log)
        checked(
            [str(folder / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE],
            "createdb",
            env={**os.environ, "PGPASSWORD": password},
        )
        yield f"postgresql://{USER}:{password}@127.0.0.1:{port}/{DATABASE}"
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
