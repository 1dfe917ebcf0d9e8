"""Fixtures: the template as a plain folder, renders cached per engine and option set, private
Redis and PostgreSQL servers, and generated projects with their dependencies installed (shared uv
cache)."""

import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from support import (
    OPTION_SETS,
    UV,
    Render,
    bake,
    clean_env,
    find_python,
    free_port,
    postgres_programs,
    redis_server_program,
    render_copier,
    run,
    template_copy,
    wait_for,
)


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template_copy(tmp_path_factory.mktemp("template") / "arq-fastapi")


@pytest.fixture(scope="session")
def render(
    template_dir: Path, tmp_path_factory: pytest.TempPathFactory, cookies_session: Any
) -> Render:
    """render(engine, option_set) -> project path; each pair is rendered once per session.

    cookiecutter through pytest-cookies, copier through its API."""
    cache: dict[tuple[str, str], Path] = {}

    def _render(engine: str, option_set: str) -> Path:
        key = (engine, option_set)
        if key not in cache:
            answers = OPTION_SETS[option_set]
            if engine == "cookiecutter":
                cache[key] = bake(cookies_session, template_dir, answers)
            else:
                slug = _render("cookiecutter", option_set).name  # same slug, derived once
                out = tmp_path_factory.mktemp(f"{engine}-{option_set}")
                cache[key] = render_copier(template_dir, answers, out, slug)
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server of the tests' own on a free port: nothing else's data is touched.

    TEST_REDIS_URL (e.g. a CI service container) replaces it; the generated projects' tests use
    queues and keys of their own there and delete what they create.
    """
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        yield given
        return
    server = redis_server_program()
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
        except (redis.RedisError, OSError):
            return False

    try:
        wait_for(answers, 10, f"redis-server on port {port}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of the tests' own on a free port, with an empty database `app` owned by
    the user `app` (trust authentication, loopback only): nothing else's data is touched. Started
    only when a test asks for it (the option sets with database=postgres)."""
    bindir = postgres_programs()
    # initdb and postgres refuse to run as root: under root (a container) they run as PostgreSQL's
    # own system user, or nobody, in a folder that user owns outside root's private temp folders.
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            user = pwd.getpwnam("nobody")
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    # Short: the server's Unix socket lives here too, and socket paths stop at about 100 bytes.
    base = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
    if as_user:
        os.chown(base, as_user["user"], as_user["group"])
    data, log = base / "data", base / "server.log"
    env = {**os.environ, "LC_ALL": "C"}
    for variable in ("PGDATA", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        env.pop(variable, None)

    def postgres(*command: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(bindir / command[0]), *command[1:]],
            input=stdin,
            env=env,
            cwd=base,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **as_user,
        )
        server_log = log.read_text(errors="replace") if log.exists() else ""
        assert result.returncode == 0, (
            f"{command[0]} failed:\n{result.stdout}{result.stderr}{server_log}"
        )
        return result.stdout + result.stderr

    port = free_port()
    try:
        initdb = ["-A", "trust", "-U", "app", "-E", "UTF8", "--no-locale", "--no-sync"]
        postgres("initdb", "-D", str(data), *initdb)
        # The database the URL names, made before the server starts: single-user mode needs no
        # client program (createdb, psql) and no connection.
        output = postgres(
            "postgres", "--single", "-D", str(data), "postgres", stdin="CREATE DATABASE app\n"
        )
        assert "ERROR" not in output, output
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {shlex.quote(str(base))} -c fsync=off"
        )
        postgres(
            "pg_ctl", "start", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options
        )
        try:
            yield f"postgresql://app@127.0.0.1:{port}/app"
        finally:
            postgres("pg_ctl", "stop", "-D", str(data), "-m", "fast", "-w", "-t", "30")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def synced(render: Render, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """synced(option_set) -> a copy of the cookiecutter render with `uv sync --locked` done (dev
    dependencies too). A copy, so the pristine renders stay comparable."""
    cache: dict[str, Path] = {}

    def _synced(option_set: str) -> Path:
        if option_set not in cache:
            rendered = render("cookiecutter", option_set)
            project = tmp_path_factory.mktemp(f"synced-{option_set}") / rendered.name
            shutil.copytree(rendered, project)
            version = (project / ".python-version").read_text().strip()
            run(
                [UV, "sync", "--locked", "--python", find_python(version)],
                cwd=project,
                env=clean_env(),
            )
            cache[option_set] = project
        return cache[option_set]

    return _synced
