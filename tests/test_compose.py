"""The compose file: valid for docker compose and its schema, web and a worker per queue wired to a
healthy Redis (and, with database=postgres, to a schema that a one-shot `migrate` brought current
on a healthy PostgreSQL), and `compose watch` rebuilding what it should."""

import json
import os
import subprocess
from urllib.parse import urlsplit

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


# The services that run the app's image as long-lived processes.
APP_SERVICES = ("web", "worker", "worker-bulk")


def has_database(option_set: str) -> bool:
    return OPTION_SETS[option_set].get("database", "none") == "postgres"


@pytest.mark.parametrize("option_set", OPTION_SETS)
def test_the_database_and_its_migration_come_and_go_with_the_answer(
    render: Render, option_set: str
) -> None:
    project = render("cookiecutter", option_set)
    raw = (project / "compose.yaml").read_text()
    compose = yaml.safe_load(raw)
    services = compose["services"]
    postgres = has_database(option_set)
    assert ("postgres" in services) is postgres
    assert ("migrate" in services) is postgres
    assert ("postgres-data" in compose["volumes"]) is postgres
    for name in APP_SERVICES:
        assert ("migrate" in services[name]["depends_on"]) is postgres, name
        assert ("DATABASE_URL" in services[name]["environment"]) is postgres, name
    # Nothing of it is left in a project without a database, not even a comment.
    assert ("postgres" in raw.lower()) is postgres
    assert ("DATABASE_URL" in raw) is postgres
    assert ("migrate" in raw) is postgres
    assert ("DATABASE_URL" in (project / ".env.example").read_text()) is postgres


@pytest.mark.parametrize("option_set", [name for name in OPTION_SETS if has_database(name)])
def test_web_and_workers_start_after_a_migration_on_a_healthy_postgres(
    render: Render, option_set: str
) -> None:
    project = render("cookiecutter", option_set)
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    services = compose["services"]

    postgres = services["postgres"]
    assert postgres["image"] == "postgres:17-alpine"
    assert postgres["environment"]["POSTGRES_USER"] == "app"
    assert postgres["environment"]["POSTGRES_DB"] == "app"
    # Healthy once it takes connections to the app's database over TCP: during the image's first
    # start, initdb's temporary server answers on the Unix socket only, then restarts.
    test = postgres["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"], test
    assert test[test.index("-U") + 1] == "app", test
    assert test[test.index("-d") + 1] == "app", test
    assert test[test.index("-h") + 1] == "127.0.0.1", test
    assert postgres["restart"] == "unless-stopped"
    assert "ports" not in postgres, "PostgreSQL must not be published to the host"
    [volume] = postgres["volumes"]
    assert volume.split(":")[0] in compose["volumes"], "its data must outlive the container"
    assert "develop" not in postgres

    # The one-shot: the app's own image and command, once PostgreSQL is healthy, never restarted
    # (a restart policy would run it again and again, and compose would never see it complete).
    migrate = services["migrate"]
    assert migrate["command"] == [project.name, "migrate"]
    assert (migrate["build"], migrate["image"]) == (
        services["web"]["build"],
        services["web"]["image"],
    )
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate["restart"] == "no"
    for key in ("healthcheck", "ports", "develop", "stop_grace_period"):
        assert key not in migrate, key

    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
        assert "postgres" not in depends, name  # migrate's own condition covers it
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"] == migrate["environment"]["DATABASE_URL"], name

    # The URL names the postgres service with the user, database and password it was created
    # with: compose's default, or the one set in the shell.
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    env["API_KEY"] = "k" * 32  # where the API has a key, compose refuses to run without one
    for password in (None, "from-the-shell-4e1f"):
        given = {**env, "POSTGRES_PASSWORD": password} if password else env
        config = run(
            [str(BIN / "docker-compose"), "-f", "compose.yaml", "config", "--format", "json"],
            cwd=project,
            env=given,
        )
        resolved = json.loads(config.stdout)["services"]
        server = resolved["postgres"]["environment"]
        assert server["POSTGRES_PASSWORD"]
        for name in (*APP_SERVICES, "migrate"):
            url = urlsplit(resolved[name]["environment"]["DATABASE_URL"])
            assert url.scheme == "postgresql", name
            assert (url.hostname, url.port) == ("postgres", 5432), name
            assert url.username == server["POSTGRES_USER"], name
            assert url.password == server["POSTGRES_PASSWORD"], name
            assert url.path == f"/{server['POSTGRES_DB']}", name
        if password:
            assert server["POSTGRES_PASSWORD"] == password
