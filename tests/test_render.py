"""Every option set renders with each engine into a clean project: no template leftovers, the
option's files present or absent, ruff and mypy clean, a lockfile that matches pyproject.toml."""

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from support import (
    API_KEY_FILES,
    CRON_FILES,
    DASHBOARD_FILES,
    DATABASE_FILES,
    KUBERNETES_FILES,
    KUBERNETES_POSTGRES_FILES,
    METRICS_FILES,
    OPTION_SETS,
    SENTRY_FILES,
    TRACING_FILES,
    UV,
    Render,
    clean_env,
    find_python,
    run,
)

ENGINES = ("cookiecutter", "copier")
LEFTOVER = re.compile(r"(?<!\$)\{\{|\{%|\{#|cookiecutter\.|_copier_")


def package_of(project: Path) -> str:
    [package] = [path.name for path in (project / "src").iterdir() if path.is_dir()]
    return package


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_no_template_syntax_is_left_in_any_file_or_name(
    render: Render, engine: str, option_set: str
) -> None:
    project = render(engine, option_set)
    leftovers = []
    for path in project.rglob("*"):
        rel = path.relative_to(project).as_posix()
        if LEFTOVER.search(rel):
            leftovers.append(f"name: {rel}")
        if path.is_file() and path.name != ".copier-answers.yml":
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if LEFTOVER.search(line):
                    leftovers.append(f"{rel}:{number}: {line.strip()}")
    assert leftovers == []


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_the_options_files_come_and_go_with_it(render: Render, option_set: str) -> None:
    project = render("cookiecutter", option_set)
    package = package_of(project)
    answers = OPTION_SETS[option_set]

    def on(option: str, files: tuple[str, ...], default: bool) -> bool:
        """The option's answer in this set; its files are there exactly when it is on."""
        value = bool(answers.get(option, default))
        for pattern in files:
            assert (project / pattern.format(pkg=package)).is_file() is value, pattern
        return value

    def text(*parts: str) -> str:
        return project.joinpath(*parts).read_text()

    src = ("src", package)
    use_cron = on("use_cron", CRON_FILES, True)
    assert ("CRON_JOBS" in text(*src, "worker", "options.py")) is use_cron
    use_api_key = on("use_api_key", API_KEY_FILES, False)
    # Each option enters the code at one seam: its real part imported there, or a stand-in.
    assert ("from .auth import" in text(*src, "web", "app.py")) is use_api_key
    assert ("API_KEY" in text("compose.yaml")) is use_api_key
    use_metrics = on("use_metrics", METRICS_FILES, True)
    assert ("WORKER_METRICS_PORT" in text("compose.yaml")) is use_metrics
    use_tracing = on("use_tracing", TRACING_FILES, True)
    assert ("from .tracing import" in text(*src, "spans.py")) is use_tracing
    use_sentry = on("use_sentry", SENTRY_FILES, True)
    assert ("from .error_reports import" in text(*src, "reporting.py")) is use_sentry
    assert ("SENTRY_DSN" in text("compose.yaml")) is use_sentry
    use_dashboard = on("use_dashboard", DASHBOARD_FILES, True)
    assert project.joinpath(*src, "web", "dashboard").is_dir() is use_dashboard
    postgres = answers.get("database", "none") == "postgres"
    for pattern in DATABASE_FILES:
        assert (project / pattern.format(pkg=package)).is_file() is postgres, pattern
    assert ("from .database import" in text(*src, "storage.py")) is postgres
    assert ("DATABASE_URL" in text("compose.yaml")) is postgres
    # Without a database, none of its code or dependencies: no module imports SQLAlchemy, and
    # neither pyproject.toml nor the lock names it.
    assert project.joinpath(*src, "database").is_dir() is postgres
    sources = "".join(path.read_text() for path in project.rglob("*.py"))
    for name in ("sqlalchemy", "asyncpg", "alembic"):
        assert (name in sources) is postgres, name
        assert (f'name = "{name}"' in text("uv.lock")) is postgres, name
        assert (f'"{name}' in text("pyproject.toml")) is postgres, name


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_the_kubernetes_folder_comes_and_goes_with_its_option(
    render: Render, engine: str, option_set: str
) -> None:
    # Both engines: each removes the folder its own way (copier `_exclude`, cookiecutter's hook).
    project = render(engine, option_set)
    use_kubernetes = OPTION_SETS[option_set].get("use_kubernetes", False)
    postgres = OPTION_SETS[option_set].get("database", "none") == "postgres"
    for path in KUBERNETES_FILES:
        assert (project / path).is_file() is use_kubernetes, path
    # The migration Job comes with both answers (its name renders empty otherwise, and is skipped).
    for path in KUBERNETES_POSTGRES_FILES:
        assert (project / path).is_file() is (use_kubernetes and postgres), path
    if use_kubernetes:
        shipped = {
            path.relative_to(project).as_posix()
            for path in (project / "deploy").rglob("*")
            if path.is_file()
        }
        assert shipped == set(KUBERNETES_FILES) | (
            set(KUBERNETES_POSTGRES_FILES) if postgres else set()
        )
    else:
        assert not (project / "deploy").exists(), "an empty deploy/ folder is left behind"


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_answers_reach_the_project(render: Render, option_set: str) -> None:
    answers = OPTION_SETS[option_set]
    project = render("cookiecutter", option_set)
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    version = answers.get("python_version", "3.12")

    assert meta["name"] == project.name
    assert meta["description"] == answers.get(
        "description", "A FastAPI service with ARQ background jobs"
    )
    assert meta["authors"][0]["name"] == answers.get("author_name", "Your Name")
    assert (project / ".python-version").read_text().strip() == version
    assert f"FROM python:{version}-slim" in (project / "Dockerfile").read_text()
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(f"# {answers.get('project_name', 'My Service')}\n")


@pytest.mark.slow
@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_ruff_and_mypy_pass_and_the_lock_matches(
    render: Render, synced: Callable[[str], Path], option_set: str, tmp_path: Path
) -> None:
    # Lint and type-check with the default render's environment: dependencies vary with one
    # answer only (database; uv lock --check below holds that), so it serves every render without
    # a database, and a render with one takes its own.
    postgres = OPTION_SETS[option_set].get("database", "none") == "postgres"
    tools = synced(option_set if postgres else "defaults") / ".venv" / "bin"
    project = render("cookiecutter", option_set)
    env = clean_env()
    run([str(tools / "ruff"), "check", "--no-cache", "."], cwd=project, env=env)
    run([str(tools / "ruff"), "format", "--check", "--no-cache", "."], cwd=project, env=env)
    run(
        # The cache goes elsewhere: the render stays pristine for the parity tests.
        [
            *(str(tools / "mypy"), "--python-executable", str(tools / "python")),
            *("--no-incremental", "--cache-dir", str(tmp_path / "mypy")),
        ],
        cwd=project,
        env=env,
    )
    python = find_python((project / ".python-version").read_text().strip())
    run([UV, "lock", "--check", "--offline", "--python", python], cwd=project, env=env)
