"""Fixtures: the template as a plain folder, renders cached per engine and option set, a private
Redis server, and generated projects with their dependencies installed (shared uv cache)."""

import os
import shutil
import subprocess
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
