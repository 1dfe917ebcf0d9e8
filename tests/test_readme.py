"""The README's two commands stay true: the test command is what .ci/run runs, and the generate-and-
run lines produce a service that answers the README's curl."""

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from support import ROOT, UV, clean_env, find_python, free_port, run, wait_for

README = (ROOT / "README.md").read_text(encoding="utf-8")
TEMPLATE_SOURCE = "gh:org/arq-fastapi"


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
    generate, curl = shell_blocks(section("Generate a project and run it"))
    [create, start] = commands(generate)
    assert create.startswith(f"uvx cookiecutter --no-input {TEMPLATE_SOURCE}")
    enter, _, dev = start.partition(" && ")
    assert (enter, dev) == ("cd my-service", "uv run my-service dev")

    # The template from this checkout stands in for the published one.
    argv = shlex.split(create.replace(TEMPLATE_SOURCE, str(template_dir)))
    run(with_our_uv(argv), cwd=tmp_path, env=clean_env())
    project = tmp_path / "my-service"
    assert (project / "pyproject.toml").is_file()

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
