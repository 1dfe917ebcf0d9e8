"""The compose file: valid for docker compose and its schema, web and a worker per queue wired to a
healthy Redis, and `compose watch` rebuilding what it should."""

import os
import subprocess

import pytest
import yaml

from support import BIN, OPTION_SETS, Render, final_stage, run


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
    # The project's own command: arq's `arq` cannot run the worker that wakes on enqueue.
    assert services["worker"]["command"] == ["my-service", "worker"]
    assert services["worker-bulk"]["command"] == ["my-service", "worker", "--queue", "bulk"]
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
def test_compose_watch_rebuilds_web_and_workers_and_leaves_scaling_alone(
    render: Render, option_set: str
) -> None:
    project = render("cookiecutter", option_set)
    services = yaml.safe_load((project / "compose.yaml").read_text())["services"]
    # Why rebuild and not sync: the final stage holds the virtualenv only, the package installed
    # non-editable, so no source file in the container is ever imported.
    copies = [item["value"] for item in final_stage(project) if item["instruction"] == "COPY"]
    assert copies == ["--from=builder /app/.venv /app/.venv"]
    assert "--no-editable" in (project / "Dockerfile").read_text()

    expected = {("./src", "rebuild"), ("./pyproject.toml", "rebuild"), ("./uv.lock", "rebuild")}
    for name in ("web", "worker", "worker-bulk"):
        watch = services[name]["develop"]["watch"]
        assert {(rule["path"], rule["action"]) for rule in watch} == expected, name
        assert services[name]["build"] == "."
    assert "develop" not in services["redis"]
    # `up --scale worker=3` needs containers compose may name and no host port to share.
    for name, service in services.items():
        assert "container_name" not in service, name
    for name in ("worker", "worker-bulk"):
        assert "ports" not in services[name], name
