"""The commands the compose file and the Dockerfile name, run as processes against real Redis:
the web answers its health check, the README's curl enqueues, the worker completes the job, the
worker's health check follows that worker, and SIGTERM stops both cleanly."""

import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import clean_env, free_port, run, wait_for
from test_artifacts import BIN, final_stage

pytestmark = pytest.mark.slow


def compose_services(project: Path) -> dict[str, Any]:
    config = run(
        [str(BIN / "docker-compose"), "-f", "compose.yaml", "config", "--format", "json"],
        cwd=project,
    )
    services: dict[str, Any] = json.loads(config.stdout)["services"]
    return services


def readme_curl(project: Path) -> str:
    readme = (project / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- curl-example[^>]*-->\n```sh\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md has no marked curl example"
    return match.group(1)


class Service:
    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.command = command
        self.log = log
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"{self.command[0]} ignored SIGTERM:\n{self.output()}") from None


@dataclass
class Stack:
    """The web and the worker of a generated project, started as compose would start them."""

    project: Path
    services: dict[str, Any]
    port: int
    cwd: Path
    envs: dict[str, dict[str, str]]
    web: Service
    worker: Service

    def healthcheck(self, service: str) -> subprocess.CompletedProcess[str]:
        """Run the service's compose health check command, as `docker compose` would."""
        test = list(self.services[service]["healthcheck"]["test"])
        assert test[0] == "CMD"
        command = [part.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}") for part in test[1:]]
        return subprocess.run(
            command,
            env=self.envs[service],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@pytest.fixture(params=["defaults"])
def stack(
    request: pytest.FixtureRequest, synced: Callable[[str], Path], redis_url: str, tmp_path: Path
) -> Iterator[Stack]:
    project = synced(request.param)
    services = compose_services(project)
    port = free_port()
    venv_bin = project / ".venv" / "bin"
    queue = f"runtime-{uuid.uuid4().hex[:8]}:queue"

    def env_of(service: str, **extra: str) -> dict[str, str]:
        environment = {k: str(v) for k, v in services[service]["environment"].items()}
        environment.update(REDIS_URL=redis_url, QUEUE_NAME=queue, **extra)
        # As in the image: the venv first on PATH, no source tree in the working directory.
        return clean_env(**environment, PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}")

    envs = {"web": env_of("web"), "worker": env_of("worker", WORKER_ID="w1")}
    [cmd] = [item["value"] for item in final_stage(project) if item["instruction"] == "CMD"]
    web_command = json.loads(cmd)
    web_command[web_command.index("--port") + 1] = str(port)
    web_command[web_command.index("--host") + 1] = "127.0.0.1"

    web = Service(web_command, envs["web"], tmp_path, tmp_path / "web.log")
    worker = Service(
        list(services["worker"]["command"]), envs["worker"], tmp_path, tmp_path / "worker.log"
    )
    try:
        yield Stack(project, services, port, tmp_path, envs, web, worker)
    finally:
        for service in (web, worker):
            if service.process.poll() is None:
                service.process.kill()
                service.process.wait()


def test_compose_commands_serve_the_readme_curl_and_stop_cleanly(stack: Stack) -> None:
    wait_for(lambda: stack.healthcheck("web").returncode == 0, 60, "the web health check")
    wait_for(lambda: stack.healthcheck("worker").returncode == 0, 60, "the worker health check")

    script = readme_curl(stack.project).replace("localhost:8000", f"127.0.0.1:{stack.port}")
    result = run(["bash", "-euo", "pipefail", "-c", script], cwd=stack.cwd)
    job = json.loads(result.stdout)
    assert job["state"] == "succeeded", (job, stack.worker.output())
    assert job["result"] == {"words": 2, "characters": 9}

    # SIGTERM: the worker finishes within its completion wait, removes its liveness key, exits 0.
    wait = int(stack.envs["worker"]["JOB_COMPLETION_WAIT"])
    assert stack.worker.stop(timeout=wait + 10) == 0, stack.worker.output()
    assert stack.healthcheck("worker").returncode == 1
    # uvicorn shuts down gracefully (lifespan closes the pool), then re-raises the signal.
    assert stack.web.stop(timeout=15) in (0, -signal.SIGTERM), stack.web.output()
    assert "Application shutdown complete" in stack.web.output()
