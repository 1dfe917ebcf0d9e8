"""The README's two commands stay true: the test command is what .ci/run runs, and the generate-and-
run lines produce a service that answers the README's curl."""

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import (
    ROOT,
    TREE_NAME,
    UV,
    clean_env,
    find_python,
    free_port,
    run,
    template_copy,
    tree,
    wait_for,
)

README = (ROOT / "README.md").read_text(encoding="utf-8")
TEMPLATE_SOURCE = "gh:org/arq-fastapi"
IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.DOTALL | re.MULTILINE)
    assert match, f"README.md has no section {title!r}"
    return match.group(1)


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.DOTALL)


def commands(block: str) -> list[str]:
    """The block's commands, comments dropped and continuation lines joined."""
    joined = block.replace("\\\n", " ")
    lines = [line.split("  #", 1)[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def with_our_uv(argv: list[str]) -> list[str]:
    """uv and uvx as installed with the tests (a PATH shim may pin another Python's copy)."""
    tools = {"uv": UV, "uvx": str(Path(UV).with_name("uvx"))}
    return [tools.get(argv[0], argv[0]), *argv[1:]]


def test_ci_runs_the_readme_test_command() -> None:
    [block] = shell_blocks(section("Run the template's tests"))
    [command] = commands(block)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")

    assert command == "uv run pytest"
    assert re.search(rf"^\s*{re.escape(command)}(\s|$)", ci, re.MULTILINE), ".ci/run differs"


@pytest.mark.slow
def test_the_readme_generates_a_project_that_serves_the_readme_curl(
    template_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    generate, curl, _answers = shell_blocks(section("Generate a project and run it"))
    [create, enter, make_repo, dev] = commands(generate)
    assert create.startswith(f"uvx cookiecutter --no-input {TEMPLATE_SOURCE}")
    assert (enter, dev) == ("cd my-service", "uv run my-service dev")

    # The template from this checkout stands in for the published one.
    argv = shlex.split(create.replace(TEMPLATE_SOURCE, str(template_dir)))
    run(with_our_uv(argv), cwd=tmp_path, env=clean_env())
    project = tmp_path / "my-service"
    assert (project / "pyproject.toml").is_file()
    run(["bash", "-euo", "pipefail", "-c", make_repo], cwd=project, env=clean_env(**IDENTITY))
    assert run(["git", "status", "--porcelain"], cwd=project).stdout == ""

    port = free_port()
    # The tests' Redis stands in for the one on localhost:6379 that dev would use.
    env = clean_env(REDIS_URL=redis_url, QUEUE_NAME="readme:queue", UV_PYTHON=find_python("3.12"))
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            with_our_uv([*shlex.split(dev), "--port", str(port)]),
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            probe = subprocess.run(
                ["curl", "-sf", f"http://127.0.0.1:{port}/health/ready"],
                capture_output=True,
                check=False,
            )
            return probe.returncode == 0

        try:
            wait_for(ready, 120, "the web app from the README")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text(errors='replace')[-4000:]}") from None
        script = curl.replace("localhost:8000", f"127.0.0.1:{port}")
        for _ in range(3):  # the worker may still be starting (uv run syncs first)
            output = run(["bash", "-euo", "pipefail", "-c", script], cwd=project, env=env).stdout
            if '"state":"succeeded"' in output:
                break
        assert '"state":"succeeded"' in output, output
        assert '"result":{"words":2,"characters":9}' in output
        assert f"Redis:   {redis_url}" in log.read_text()  # the configured one, since it answers
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    assert os.path.isdir(project / ".venv")


def next_steps(output: str) -> list[str]:
    """The commands of the next steps an engine printed."""
    _, found, steps = output.partition("Next steps:\n")
    assert found, output
    lines = []
    for line in steps.splitlines():
        if not line.startswith("    "):
            break
        lines.append(line.split("  #", 1)[0].strip())
    return lines


def test_both_engines_answer_from_the_command_line_and_name_the_folder_they_made(
    template_dir: Path, tmp_path: Path
) -> None:
    """The README's lines that answer on the command line, run with each engine: the answers are
    taken, the printed next steps name the folder each engine made, and their git line leaves a
    repository with everything committed. The two projects are the same."""
    [block] = [b for b in shell_blocks(section("Generate a project and run it")) if "--data" in b]
    lines = commands(block)
    assert [line.split()[:2] for line in lines] == [["uvx", "cookiecutter"], ["uvx", "copier"]]
    made = {}
    for line in lines:
        argv = shlex.split(line.replace(TEMPLATE_SOURCE, str(template_dir)))
        engine = argv[1]
        cwd = tmp_path / engine
        cwd.mkdir()
        # The engines of the tests' environment stand in for uvx's; PWD as a shell sets it.
        result = run(
            [sys.executable, "-m", engine, *argv[2:]], cwd=cwd, env=clean_env(PWD=str(cwd))
        )
        enter, make_repo, dev, test = next_steps(result.stdout + result.stderr)
        assert enter == "cd invoice-sync", enter
        assert (dev, test) == ("uv run invoice-sync dev", "uv run pytest")
        run(
            ["bash", "-euo", "pipefail", "-c", f"{enter} && {make_repo}"],
            cwd=cwd,
            env=clean_env(**IDENTITY),
        )
        project = cwd / "invoice-sync"
        assert run(["git", "status", "--porcelain"], cwd=project).stdout == ""
        answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
        assert (answers["project_name"], answers["use_cron"]) == ("Invoice Sync", False)
        made[engine] = {
            k: v
            for k, v in tree(project, skip=[".copier-answers.yml"]).items()
            if not k.startswith(".git/")
        }
    assert made["cookiecutter"] == made["copier"]


def test_the_readme_curl_lines_work_with_curl_older_than_7_84() -> None:
    """`-w '%header{name}'` (curl 7.84) is missing from Ubuntu 22.04's curl 7.81: the examples read
    the dumped headers instead, in this README and the generated one."""
    generated = (ROOT / TREE_NAME / "README.md").read_text(encoding="utf-8")
    for text in (README, generated):
        curls = [line for block in shell_blocks(text) for line in block.splitlines()]
        assert curls
        assert not any("%header{" in line or "%{header_json}" in line for line in curls)


def smoke_job() -> dict[str, Any]:
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]
    return dict(jobs["smoke"])


def test_the_fork_smoke_job_in_the_readme_is_the_workflows() -> None:
    match = re.search(r"<!-- fork-smoke-job[^>]*-->\n```yaml\n(.*?)```", README, re.DOTALL)
    assert match, "README.md has no fork smoke job"
    assert yaml.safe_load(match.group(1)) == {"smoke": smoke_job()}


def test_the_fork_smoke_job_generates_a_project_with_each_engine(tmp_path: Path) -> None:
    """The job's generate step, run in a git repository of this template with a stand-in for uvx
    that runs the tests' engines: both projects are made where the next step looks for them, and
    they are the same. (Their tests run in the generated-project tests and in CI.)"""
    steps = smoke_job()["steps"]
    [generate] = [step["run"] for step in steps if step.get("name", "").startswith("Generate")]
    [test_step] = [step["run"] for step in steps if step.get("name", "").startswith("Run")]
    projects = re.findall(r'"(\$RUNNER_TEMP/[^"]+)"', test_step)
    # The engines' version ranges are the ones the template's own tests use.
    pyproject = (ROOT / "pyproject.toml").read_text()
    for spec in re.findall(r"--from '([^']+)'", generate):
        assert f'"{spec}"' in pyproject, spec

    repo = template_copy(tmp_path / "fork")
    env = clean_env(**IDENTITY)
    run(["git", "init", "-q", "-b", "main"], cwd=repo, env=env)
    run(["git", "add", "-A"], cwd=repo, env=env)
    run(["git", "commit", "-q", "-m", "fork"], cwd=repo, env=env)
    shim = tmp_path / "bin" / "uvx"
    shim.parent.mkdir()
    shim.write_text(
        f'#!/bin/sh\n[ "$1" = --from ] && shift 2\ntool=$1; shift\n'
        f'exec {sys.executable} -m "$tool" "$@"\n'
    )
    shim.chmod(0o755)
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env.update(PATH=f"{shim.parent}{os.pathsep}{env['PATH']}", RUNNER_TEMP=str(runner_temp))
    run(["bash", "-e", "-c", generate], cwd=repo, env=env)

    made = [Path(p.replace("$RUNNER_TEMP", str(runner_temp))) for p in projects]
    assert len(made) == 2
    trees = [tree(p, skip=[".copier-answers.yml"]) for p in made]
    assert trees[0] == trees[1]
