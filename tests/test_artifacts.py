"""The Dockerfile, compose file and workflows, checked offline by the tools a reviewer would use."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from conftest import Render
from support import OPTION_SETS, ROOT, run

BIN = Path(sys.executable).parent


def final_stage(project: Path) -> list[dict[str, str]]:
    with (project / "Dockerfile").open("rb") as handle:
        parser = DockerfileParser(fileobj=handle, env_replace=False)
        instructions = parser.structure
    last_from = max(i for i, item in enumerate(instructions) if item["instruction"] == "FROM")
    return instructions[last_from:]


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_dockerfile_passes_hadolint(render: Render, option_set: str) -> None:
    project = render("cookiecutter", option_set)
    run([str(BIN / "hadolint"), "--no-color", "Dockerfile"], cwd=project)


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_the_image_runs_as_a_numeric_non_root_user_with_an_exec_form_web_command(
    render: Render, option_set: str
) -> None:
    project = render("cookiecutter", option_set)
    stage = final_stage(project)
    users = [item["value"] for item in stage if item["instruction"] == "USER"]
    [cmd] = [item["value"] for item in stage if item["instruction"] == "CMD"]

    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]} is not numeric"
    assert int(uid) > 0, "the image runs as root"
    command = json.loads(cmd)  # exec form: signals reach the process, no shell in between
    assert command[:2] == ["uvicorn", f"{project.name.replace('-', '_')}.web.app:create_app"]


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_compose_is_valid_for_compose_and_its_schema(render: Render, option_set: str) -> None:
    project = render("cookiecutter", option_set)
    config = [str(BIN / "docker-compose"), "-f", "compose.yaml", "config", "-q"]
    if OPTION_SETS[option_set].get("use_api_key"):
        # Without a key compose refuses to start, saying how to make one.
        refused = subprocess.run(config, cwd=project, capture_output=True, text=True, check=False)
        assert refused.returncode != 0
        assert "set API_KEY" in refused.stderr
        run(config, cwd=project, env={**os.environ, "API_KEY": "k" * 32})
    else:
        run(config, cwd=project)
    run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml"],
        cwd=project,
    )


def test_compose_wires_web_and_a_worker_per_queue_to_a_healthy_redis(render: Render) -> None:
    project = render("cookiecutter", "defaults")
    services = yaml.safe_load((project / "compose.yaml").read_text())["services"]

    for name in ("web", "worker", "worker-bulk"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["healthcheck"]["test"][0] == "CMD"
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        # Web and workers must agree on both queue names.
        for variable in ("QUEUE_NAME", "BULK_QUEUE_NAME"):
            web = services["web"]["environment"][variable]
            assert services[name]["environment"][variable] == web
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in services["redis"], "Redis must not be published to the host"
    settings = "my_service.worker.settings"
    assert services["worker"]["command"] == ["arq", f"{settings}.WorkerSettings"]
    assert services["worker-bulk"]["command"] == ["arq", f"{settings}.BulkWorkerSettings"]
    # Each worker's health check reads its own queue's liveness key.
    probe = "my_service.worker.probe"
    assert services["worker"]["healthcheck"]["test"][-1] == probe
    assert services["worker-bulk"]["healthcheck"]["test"][-2:] == [probe, "bulk"]
    # compose's grace period and the worker's setting come from one variable, so they agree.
    raw = (project / "compose.yaml").read_text()
    assert raw.count("stop_grace_period: ${STOP_GRACE_PERIOD:-30}s") == 1  # merged into both
    for name in ("worker", "worker-bulk"):
        assert services[name]["stop_grace_period"] == "${STOP_GRACE_PERIOD:-30}s"
        assert services[name]["environment"]["STOP_GRACE_PERIOD"] == "${STOP_GRACE_PERIOD:-30}"
        assert "JOB_COMPLETION_WAIT" not in services[name]["environment"]


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
