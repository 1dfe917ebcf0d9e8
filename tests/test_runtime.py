"""The commands the compose file and the Dockerfile name, run as processes against real Redis (and,
with database=postgres, a real PostgreSQL migrated by compose's one-shot migrate command first):
the web answers its health check, the README's curl examples enqueue and stream, a worker of each
queue completes its jobs, a document written to the database is indexed by a worker, each worker's
health check follows that worker, and SIGTERM stops all of them cleanly."""

import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from support import BIN, OPTION_SETS, clean_env, final_stage, free_port, run, wait_for

pytestmark = pytest.mark.slow


def compose_services(project: Path, env: dict[str, str]) -> dict[str, Any]:
    config = run(
        [str(BIN / "docker-compose"), "-f", "compose.yaml", "config", "--format", "json"],
        cwd=project,
        env={**os.environ, **env},
    )
    services: dict[str, Any] = json.loads(config.stdout)["services"]
    return services


def readme_curls(project: Path) -> list[str]:
    """The README's marked curl examples, in order."""
    readme = (project / "README.md").read_text(encoding="utf-8")
    examples = re.findall(r"<!-- curl-example[^>]*-->\n```sh\n(.*?)```", readme, re.DOTALL)
    assert examples, "README.md has no marked curl example"
    return examples


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
    """The web and the workers of a generated project, started as compose would start them."""

    project: Path
    services: dict[str, Any]
    port: int
    cwd: Path
    envs: dict[str, dict[str, str]]
    web: Service
    workers: dict[str, Service]
    client_env: dict[str, str]
    """What the README's curl lines need from the shell (API_KEY when the API has one), and the
    OPERATOR_KEY an operator exports before `docker compose up` to use the dead letters."""

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


@pytest.fixture(params=["defaults", "py313-api-key-k8s"])
def stack(
    request: pytest.FixtureRequest, synced: Callable[[str], Path], redis_url: str, tmp_path: Path
) -> Iterator[Stack]:
    project = synced(request.param)
    # compose's postgres service, as a PostgreSQL of the tests' own (started for these sets only).
    database_url: str | None = None
    if OPTION_SETS[request.param].get("database") == "postgres":
        database_url = request.getfixturevalue("postgres_url")
    # What a user exports before `docker compose up` (the README says how to make them).
    client_env = {"OPERATOR_KEY": secrets.token_urlsafe(32)}
    if OPTION_SETS[request.param].get("use_api_key"):
        client_env["API_KEY"] = secrets.token_urlsafe(32)
    services = compose_services(project, client_env)
    port = free_port()
    venv_bin = project / ".venv" / "bin"
    prefix = f"runtime-{uuid.uuid4().hex[:8]}"

    def env_of(service: str, **extra: str) -> dict[str, str]:
        environment = {k: str(v) for k, v in services[service]["environment"].items()}
        if "WORKER_METRICS_PORT" in environment:
            # Each container has a network of its own; processes on one host need a port each.
            environment["WORKER_METRICS_PORT"] = str(free_port())
        environment.update(
            REDIS_URL=redis_url,
            QUEUE_NAME=f"{prefix}:queue",
            BULK_QUEUE_NAME=f"{prefix}:bulk",
            **extra,
        )
        if "DATABASE_URL" in environment:
            assert database_url, f"{service} names a database the option set does not have"
            environment["DATABASE_URL"] = database_url
        # As in the image: the venv first on PATH, no source tree in the working directory.
        return clean_env(**environment, PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}")

    # Every service that runs `<project> worker` is a worker; each gets the same host name, as
    # two containers of one pod would, so their liveness keys must tell them apart by queue.
    worker_names = [
        name for name, spec in services.items() if (spec.get("command") or [""])[1:2] == ["worker"]
    ]
    envs = {"web": env_of("web")} | {name: env_of(name, WORKER_ID="w1") for name in worker_names}
    [cmd] = [item["value"] for item in final_stage(project) if item["instruction"] == "CMD"]
    web_command = json.loads(cmd)
    web_command[web_command.index("--port") + 1] = str(port)
    web_command[web_command.index("--host") + 1] = "127.0.0.1"

    if "migrate" in services:
        # compose starts web and workers only once this one-shot has exited 0
        # (service_completed_successfully). Twice, as every `docker compose up` runs it again: the
        # second run finds the schema current and must succeed as well.
        envs["migrate"] = env_of("migrate")
        for _ in range(2):
            run(
                list(services["migrate"]["command"]), cwd=tmp_path, env=envs["migrate"], timeout=120
            )

    web = Service(web_command, envs["web"], tmp_path, tmp_path / "web.log")
    workers = {
        name: Service(
            list(services[name]["command"]), envs[name], tmp_path, tmp_path / f"{name}.log"
        )
        for name in worker_names
    }
    try:
        yield Stack(project, services, port, tmp_path, envs, web, workers, client_env)
    finally:
        for service in (web, *workers.values()):
            if service.process.poll() is None:
                service.process.kill()
                service.process.wait()


def call(method: str, url: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    """One JSON request: its status and decoded body, errors included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def documents_are_written_and_indexed(stack: Stack, logs: Callable[[], str]) -> None:
    """database=postgres: POST /documents writes the row and, through the outbox, an
    index_document job that a worker runs; GET /documents/{id} shows it indexed; a title is taken
    once."""
    documents = f"http://127.0.0.1:{stack.port}/documents"
    key = stack.client_env.get("API_KEY")
    headers = {"X-API-Key": key} if key else {}
    text = "the quick brown fox jumps"
    body = {"title": f"runtime {uuid.uuid4().hex}", "text": text}
    status, created = call("POST", documents, headers, body)
    assert status == 201, (status, created, stack.web.output()[-3000:])
    assert str(uuid.UUID(created["id"])) == created["id"], created
    assert isinstance(created["job_id"], str), created
    assert created["job_id"], created

    document: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, document = call("GET", f"{documents}/{created['id']}", headers)
        assert status == 200, (status, document)
        if document["indexed"] is True:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"not indexed within 30 s: {document}\n{logs()[-6000:]}")
    assert document["id"] == created["id"], document
    assert document["title"] == body["title"], document
    assert document["words"] == len(text.split()), document

    # The same title again: refused.
    status, again = call("POST", documents, headers, body)
    assert status == 409, (status, again)
    if key:  # guarded like /jobs
        status, refused = call("POST", documents, {}, {**body, "title": f"no key {uuid.uuid4()}"})
        assert status == 401, (status, refused)


def test_compose_commands_serve_the_readme_curls_and_stop_cleanly(stack: Stack) -> None:
    assert set(stack.workers) == {"worker", "worker-bulk"}
    wait_for(lambda: stack.healthcheck("web").returncode == 0, 60, "the web health check")
    for name in stack.workers:
        wait_for(
            lambda name=name: stack.healthcheck(name).returncode == 0, 60, f"{name}'s health check"
        )

    def logs() -> str:
        return "\n".join(worker.output() for worker in stack.workers.values())

    short, long, tasks, refused, joined = [
        run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=stack.cwd,
            env={**os.environ, **stack.client_env},
        ).stdout
        for script in (
            example.replace("localhost:8000", f"127.0.0.1:{stack.port}")
            for example in readme_curls(stack.project)
        )
    ]
    job = json.loads(short)
    assert job["state"] == "succeeded", (job, logs())
    assert job["result"] == {"words": 2, "characters": 9}
    # The long example streams its progress (SSE) from the bulk worker until the job ends.
    assert long.count("event: progress") == 5, (long, logs())
    assert long.rstrip().endswith('"state":"succeeded"}'), long
    # The task list shows each task's limits (check_url's, fleet-wide).
    assert '"rate":{"limit":20,"per":1.0},"concurrency":10' in tasks, tasks
    # A callback to an address inside the network: refused at enqueue, nothing queued.
    assert json.loads(refused)["detail"][0]["type"] == "callback_refused", refused
    # A fan-out and its join in one batch: the join adds up what its two parents counted.
    join = json.loads(joined)
    assert (join["state"], join["result"]) == ("succeeded", {"words": 5, "parents": 2}), join
    assert len(join["parents"]) == 2, join

    # compose hands the exported OPERATOR_KEY to the web: the dead letters open with it alone.
    letters = f"http://127.0.0.1:{stack.port}/dead-letters"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(letters, timeout=10)
    assert refused.value.code == 401
    operator = {"X-Operator-Key": stack.client_env["OPERATOR_KEY"]}
    request = urllib.request.Request(letters, headers=operator)
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)["total"] == 0

    # Each worker serves its own metrics (use_metrics): both ran a job by now.
    for name in stack.workers:
        port = stack.envs[name].get("WORKER_METRICS_PORT")
        if port:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
                assert 'outcome="succeeded"' in page.read().decode(), name

    if "migrate" in stack.services:
        documents_are_written_and_indexed(stack, logs)

    # SIGTERM: each worker finishes within its completion wait, removes its own liveness key
    # (the other's stays), and exits 0.
    for name, worker in stack.workers.items():
        # Within compose's grace period, the one number both read.
        grace = int(stack.envs[name]["STOP_GRACE_PERIOD"])
        assert worker.stop(timeout=grace) == 0, worker.output()
        assert stack.healthcheck(name).returncode == 1
        for other in stack.workers.keys() - {name}:
            alive = stack.workers[other].process.poll() is None
            assert (stack.healthcheck(other).returncode == 0) == alive
    # uvicorn shuts down gracefully (lifespan closes the pool), then re-raises the signal.
    assert stack.web.stop(timeout=15) in (0, -signal.SIGTERM), stack.web.output()
    assert "Application shutdown complete" in stack.web.output()


def test_schemathesis_finds_no_server_error_in_the_running_service(stack: Stack) -> None:
    """Property-based requests from the OpenAPI schema, against the real web and workers: bad
    input of every kind gets a 4xx, never a 5xx, and the web logs no traceback."""
    wait_for(lambda: stack.healthcheck("web").returncode == 0, 60, "the web health check")
    schema = f"http://127.0.0.1:{stack.port}/openapi.json"
    key = stack.client_env.get("API_KEY")
    auth = ["--header", f"X-API-Key: {key}"] if key else []
    # The operators' routes too, so that their input is fuzzed rather than refused at the door.
    auth += ["--header", f"X-Operator-Key: {stack.client_env['OPERATOR_KEY']}"]
    result = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            schema,
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "30",
            "--request-timeout",
            "10",
            "--workers",
            "1",
            *auth,
        ],
        cwd=stack.cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-6000:]
    assert re.search(r"\d+ generated, \d+ passed", result.stdout), result.stdout[-3000:]
    assert "Traceback" not in stack.web.output()


@pytest.mark.parametrize("option_set", ["defaults"])
def test_the_benchmark_runs_and_reports_its_ratios_and_goals(
    synced: Callable[[str], Path], redis_url: str, option_set: str
) -> None:
    """A smoke run of the generated project's benchmarks (tiny, so no figure is judged here): they
    run against real Redis and real processes, print their tables, and leave no key behind."""
    project = synced(option_set)
    with Redis.from_url(redis_url) as redis:
        arq_keys = jobs_keys(redis)
    result = run(
        [
            str(project / ".venv" / "bin" / "python"),
            "-m",
            "bench",
            "--quick",
            "--redis-url",
            redis_url,
        ],
        cwd=project,
        env=clean_env(),
    )

    # One table per part, each row a yardstick with the ratios measured in this run, then the
    # goals and whether they hold (figures are not judged: a smoke run is too short for them).
    for row in (
        r"^Worker throughput, word_count: .*ratios to raw arq tuned$",
        r"^this service \(max_jobs 50, wakes on enqueue\)\s+\d+\s+\d+\s+[0-9.]+x\s",
        r"^raw arq tuned \(max_jobs 50, poll 0\.01 s\)\s+\d+\s+\d+\s+1\.00x\s",
        r"^raw arq, project settings \(max_jobs 50, poll 0\.5 s\)\s+\d+\s+\d+\s+[0-9.]+x\s",
        r"^raw arq defaults \(max_jobs 10, poll 0\.5 s\)\s+\d+\s+\d+\s+[0-9.]+x\s",
        r"^this service, the task with a rate limit and a cap\s+\d+\s+\d+\s+[0-9.]+x\s",
        r"^this service, each job calling back \(webhook\)\s+\d+\s+\d+\s+[0-9.]+x\s",
        r"^Limits' cost \(queue\.limits\): jobs/s [0-9.]+x this service's plain jobs; per job, "
        r"worker CPU [+-]\d+ us, Redis CPU [+-]\d+ us, commands [+-][0-9.]+$",
        r"^Webhooks' cost: jobs/s [0-9.]+x this service's plain jobs; ",
        r"^this service, every second job after the one before\s+\d+\s+\d+\s+[0-9.]+x\s",
        r"^Dependencies' cost \(half the jobs after a parent\): jobs/s [0-9.]+x this service's ",
        r"^Worker throughput, 10 ms I/O: ",
        r"^HTTP \(uvloop \+ httptools\): ",
        r"^POST /jobs \(this service\)\s+\d+\s+[0-9.]+x\s+[0-9.]+x\s",
        r"^naive enqueue \(lifespan pool \+ arq's enqueue_job\)\s+\d+\s+1\.00x\s",
        r"^Durable enqueue: one replica attached, ",
        r"^POST /jobs, DURABLE_ENQUEUE_REPLICAS=1 \(Redis WAIT\)\s+\d+\s+[0-9.]+x\s",
        r"^End-to-end latency on an idle worker ",
        r"^this service \(wakes on enqueue, poll 0\.5 s\)\s+20\s+[0-9.]+\s",
        r"^raw arq, poll 0\.5 s\s+4\s+[0-9.]+\s",
        r"^The floor at idle here and now \(p50s of 4, each after an idle pause\): a bare "
        r"endpoint of the same web [0-9.]+ ms, a Redis PING [0-9.]+ ms$",
        r"^Capacity: 2 workers per queue drain \d+ jobs on each of two queues ",
        r"^one Redis\s+\d+\s+1\.00x\s",
        r"^two Redis \(bulk queue on its own\)\s+\d+\s+[0-9.]+x\s+\d+\s+\d+ \+ \d+\s",
        r"^Capacity model from this run: a job costs Redis \d+ us to enqueue .* so a Redis core "
        r"carries [0-9,]+ jobs/s",
        r"^POST /jobs \(this service\)\s+\d+\s+[0-9.]+x\s+[0-9.]+x\s+[0-9.]+\s+[0-9.]+"
        r"\s+\d+\s+\d+$",  # web and Redis CPU us a request
        r"^100,000\s+[0-9.]+\s+\d+\s+[0-9,.]+\s+[0-9,.]+$",
        r"^saq: ",
        r"^Goals$",
        r"^word_count: jobs/s >= 0\.90x raw tuned\s+[0-9.]+x\s+(yes|no)$",
        r"^word_count: worker CPU/job <= 1\.2x raw tuned\s+[0-9.]+x\s+(yes|no)$",
        r"^word_count: Redis CPU/job <= 1\.5x raw tuned\s+[0-9.]+x\s+(yes|no)$",
        r"^10 ms I/O: jobs/s >= 0\.90x raw tuned\s+[0-9.]+x\s+(yes|no)$",
        r"^HTTP: POST /jobs >= 1\.2x the naive arq enqueue\s+[0-9.]+x\s+(yes|no)$",
        r"^latency at idle: this service's p50 <= 3 ms\s+[0-9.]+ ms\s+(yes|no)$",
        r"^idle worker CPU <= 0\.1 %\s+[0-9.]+ %\s+(yes|no)$",
        r"^capacity: two Redis >= 0\.9x one Redis \(.*\)\s+[0-9.]+x\s+(yes|no)$",
    ):
        assert re.search(row, result.stdout, re.MULTILINE), (row, result.stdout)
    # Nothing left behind: no key under its run's prefix, and no arq job, result or retry counter
    # more than before (other tests' keys may expire meanwhile, so the count may drop).
    with Redis.from_url(redis_url) as redis:
        assert list(redis.scan_iter(match="bench-*", count=1000)) == []
        assert jobs_keys(redis) <= arq_keys


def jobs_keys(redis: Redis) -> int:
    """arq's keys on `redis` but for cron runs: the compose stack's worker, still up for this
    module, may queue its cron job meanwhile (one key more that the benchmark did not write)."""
    return sum(1 for key in redis.scan_iter(match="arq:*", count=1000) if b":cron:" not in key)
