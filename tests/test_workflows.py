"""The GitHub workflows of the template and of the generated project: their schema, actions pinned
by SHA with least permissions and timeouts, actionlint (with shellcheck) and zizmor clean, and the
template's compose job."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from support import BIN, OPTION_SETS, ROOT, Render, run


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_generated_workflow_matches_the_github_schema(render: Render, option_set: str) -> None:
    project = render("cookiecutter", option_set)
    run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            ".github/workflows/ci.yml",
        ],
        cwd=project,
    )


def test_template_workflows_match_the_github_schema() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
        + [str(path) for path in workflows],
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "workflow",
    [
        pytest.param("generated", id="generated"),
        pytest.param("template", id="template"),
    ],
)
def test_workflows_pin_actions_by_sha_with_least_permissions_and_timeouts(
    render: Render, workflow: str
) -> None:
    if workflow == "generated":
        paths = [render("cookiecutter", "defaults") / ".github" / "workflows" / "ci.yml"]
    else:
        paths = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    for path in paths:
        spec = yaml.safe_load(path.read_text())
        assert spec["permissions"] == {"contents": "read"}, path
        for name, job in spec["jobs"].items():
            assert "timeout-minutes" in job, f"{path.name}: job {name} has no timeout"
            for step in job.get("steps", []):
                if "uses" in step:
                    ref = step["uses"].split("@", 1)[1]
                    assert re.fullmatch(r"[0-9a-f]{40}", ref), f"not pinned by SHA: {step}"


def template_workflows() -> list[Path]:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    return workflows


def actionlint(paths: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    # shellcheck by path: actionlint silently skips its checks of `run:` scripts when it finds none.
    return subprocess.run(
        [str(BIN / "actionlint"), "-no-color", "-shellcheck", str(BIN / "shellcheck")]
        + [str(path) for path in paths],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_actionlint_checks_run_scripts_with_shellcheck(tmp_path: Path) -> None:
    workflow = tmp_path / "unquoted.yml"
    workflow.write_text(
        "on: push\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo $UNQUOTED\n"
    )
    result = actionlint([workflow], cwd=tmp_path)
    assert result.returncode != 0
    assert "SC2086" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_generated_workflow_passes_actionlint(render: Render, option_set: str) -> None:
    project = render("cookiecutter", option_set)
    result = actionlint([project / ".github" / "workflows" / "ci.yml"], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_workflows_pass_actionlint() -> None:
    result = actionlint(template_workflows(), cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_generated_github_and_pre_commit_files_pass_zizmor(render: Render, option_set: str) -> None:
    project = render("cookiecutter", option_set)
    # The whole project: zizmor collects the workflows, dependabot.yml and .pre-commit-config.yaml.
    run([str(BIN / "zizmor"), "--offline", "--no-progress", "."], cwd=project)


def test_template_workflows_pass_zizmor() -> None:
    run(
        [str(BIN / "zizmor"), "--offline", "--no-progress"]
        + [str(path) for path in template_workflows()],
        cwd=ROOT,
    )


def test_the_template_workflow_runs_the_default_project_under_compose(render: Render) -> None:
    [path] = [p for p in template_workflows() if p.name == "ci.yml"]
    jobs = yaml.safe_load(path.read_text())["jobs"]
    steps = jobs["compose"]["steps"]
    runs = [step.get("run", "") for step in steps]
    assert any(script.startswith("docker compose up --wait") for script in runs)
    teardown = steps[-1]
    assert teardown["run"] == "docker compose down -v"
    assert teardown["if"].startswith("always()")
    # The aggregate check waits for every other job but the release, which waits for it.
    assert sorted(jobs["all-green"]["needs"]) == sorted(set(jobs) - {"all-green", "release"})
    assert jobs["release"]["needs"] == ["all-green"]

    # Its way of finding the README's first curl example finds it in a default render.
    [script] = [s for s in runs if "curl-example" in s]
    awk = re.search(r"awk '(.*?)' README\.md", script, re.DOTALL)
    assert awk, script
    project = render("cookiecutter", "defaults")
    example = run(["awk", awk.group(1), "README.md"], cwd=project).stdout
    assert example.startswith("location=$(curl ")
    assert '"task": "word_count"' in example
    assert "http://localhost:8000$location" in example
