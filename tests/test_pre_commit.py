"""The generated pre-commit configuration: the locked ruff and mypy as local hooks, passing on a new
project and fixing what ruff can."""

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from support import BIN, OPTION_SETS, UV, Render, clean_env, run


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_pre_commit_runs_the_locked_ruff_and_mypy_as_local_hooks(
    render: Render, option_set: str
) -> None:
    project = render("cookiecutter", option_set)
    run([str(BIN / "pre-commit"), "validate-config", ".pre-commit-config.yaml"], cwd=project)
    [repo] = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())["repos"]
    assert repo["repo"] == "local"  # nothing to clone
    hooks = {hook["id"]: hook for hook in repo["hooks"]}
    assert list(hooks) == ["ruff-check", "ruff-format", "mypy"]  # fixes first, then format
    for hook in hooks.values():
        assert hook["language"] == "system"
        assert hook["entry"].split()[:2] == ["uv", "run"], hook["id"]
    assert "--fix" in hooks["ruff-check"]["entry"].split()
    # mypy checks what [tool.mypy] lists, as CI does, not only the staged files.
    assert hooks["mypy"]["pass_filenames"] is False
    ci = (project / ".github" / "workflows" / "ci.yml").read_text()
    for command in ("uv run ruff check", "uv run ruff format --check", "uv run mypy"):
        assert command in ci


@pytest.mark.slow
def test_pre_commit_hooks_pass_on_a_new_project_and_fix_what_ruff_can(
    render: Render, synced: Callable[[str], Path], tmp_path: Path
) -> None:
    # A git repository of its own, run on the synced project's environment as it is (UV_NO_SYNC),
    # so neither the shared render nor that environment changes.
    project = tmp_path / "project"
    shutil.copytree(render("cookiecutter", "defaults"), project)
    env = clean_env(
        UV_PROJECT_ENVIRONMENT=str(synced("defaults") / ".venv"),
        UV_NO_SYNC="1",
        PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
        PATH=os.pathsep.join([str(Path(UV).parent), os.environ["PATH"]]),
    )
    hooks = [str(BIN / "pre-commit"), "run", "--all-files", "--color", "never"]
    run(["git", "init", "-q"], cwd=project, env=env)
    run(["git", "add", "-A"], cwd=project, env=env)
    run(hooks, cwd=project, env=env)

    module = project / "src" / "my_service" / "settings.py"
    clean = module.read_text()
    module.write_text("import os\n" + clean)
    run(["git", "add", "-A"], cwd=project, env=env)
    fixed = subprocess.run(hooks, cwd=project, env=env, capture_output=True, text=True, check=False)
    assert fixed.returncode == 1, fixed.stdout + fixed.stderr
    assert "files were modified by this hook" in fixed.stdout
    assert module.read_text() == clean
