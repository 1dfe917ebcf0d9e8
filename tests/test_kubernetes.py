"""The Kubernetes manifests (use_kubernetes): valid for every Kubernetes schema kubernetes-validate
ships, KEDA's ScaledObjects held to a schema of their own, pods locked down, probed and sized,
config, secrets and commands matching what compose gives each service, and with database=postgres
a Job that migrates the schema before the rollout."""

import importlib.resources
import json
import re
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from kubernetes_validate.utils import all_versions as all_k8s_versions
from referencing import Registry, Resource

from support import (
    BIN,
    OPTION_SETS,
    Render,
    bake,
    clean_env,
    final_stage,
    render_copier,
    run,
    tree,
)

K8S_OPTION_SET = "py313-api-key-k8s"
# The other branch of each condition in deploy/kubernetes: a CPU autoscaler instead of KEDA (no
# metrics), no API_KEY and no database (no migration Job). Rendered here with both engines, not
# added to OPTION_SETS (and CI).
K8S_WITHOUT_METRICS = {
    **OPTION_SETS[K8S_OPTION_SET],
    "use_metrics": False,
    "use_api_key": False,
    "database": "none",
}
K8S_DIR = "deploy/kubernetes"
K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json#/$defs/"

# kubernetes-validate knows the built-in kinds only: for a custom resource such as KEDA's
# ScaledObject it prints "WARN ... Couldn't find schema" and still exits 0, which would pass any
# ScaledObject unchecked. The tests below therefore hold those documents to this schema instead,
# written for the test from KEDA's ScaledObject reference (keda.sh/v1alpha1, KEDA 2.x): spec,
# scaleTargetRef, advanced and each trigger are closed to unknown fields as under --strict; object
# metadata and the HPA behavior (the type KEDA embeds) are checked against the Kubernetes
# definitions kubernetes-validate ships. Trigger metadata is a map of strings in the CRD, so a
# number there is refused by the API server; the prometheus scaler's keys are listed separately.
_INT = {"type": "integer", "minimum": 0}
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"$ref": K8S_DEFINITIONS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string", "minLength": 1},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": _INT,
                "cooldownPeriod": _INT,
                "initialCooldownPeriod": _INT,
                "idleReplicaCount": _INT,
                "minReplicaCount": _INT,
                "maxReplicaCount": _INT,
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "additionalProperties": False,
                    "properties": {"failureThreshold": _INT, "replicas": _INT},
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "scalingModifiers": {"type": "object"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {
                                    "$ref": K8S_DEFINITIONS
                                    + "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"
                                },
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {"type": "string"},
                                },
                                "additionalProperties": False,
                            },
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_TRIGGER_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["serverAddress", "query", "threshold"],
    "additionalProperties": False,
    "properties": {
        key: {"type": "string", "minLength": 1}
        for key in (
            "serverAddress",
            "query",
            "queryParameters",
            "threshold",
            "activationThreshold",
            "namespace",
            "customHeaders",
            "ignoreNullValues",
            "unsafeSsl",
        )
    },
}


@pytest.fixture(scope="module")
def k8s_without_metrics(
    template_dir: Path, tmp_path_factory: pytest.TempPathFactory, cookies_session: Any
) -> Path:
    made = bake(cookies_session, template_dir, K8S_WITHOUT_METRICS)
    copied = render_copier(
        template_dir, K8S_WITHOUT_METRICS, tmp_path_factory.mktemp("k8s-copier"), made.name
    )
    # The variant is not in OPTION_SETS, so test_parity does not see it: compare here.
    assert tree(made, [".copier-answers.yml"]) == tree(copied, [".copier-answers.yml"])
    return made


@pytest.fixture(params=["with-metrics", "without-metrics"])
def k8s(request: pytest.FixtureRequest, render: Render) -> tuple[Path, dict[str, Any]]:
    """(project, answers) for both renders with use_kubernetes."""
    if request.param == "with-metrics":
        return render("cookiecutter", K8S_OPTION_SET), OPTION_SETS[K8S_OPTION_SET]
    return request.getfixturevalue("k8s_without_metrics"), K8S_WITHOUT_METRICS


def kustomization(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / K8S_DIR / "kustomization.yaml").read_text())


def k8s_documents(project: Path) -> list[tuple[str, dict[str, Any]]]:
    """(file, document) for every document of every resource the kustomization lists."""
    return [
        (name, document)
        for name in kustomization(project)["resources"]
        for document in yaml.safe_load_all((project / K8S_DIR / name).read_text())
        if document
    ]


def k8s_objects(project: Path, kind: str) -> dict[str, dict[str, Any]]:
    return {
        document["metadata"]["name"]: document
        for _, document in k8s_documents(project)
        if document["kind"] == kind
    }


def worker_deployments(project: Path) -> dict[str, dict[str, Any]]:
    """The worker Deployments by queue key (`default`, `bulk`)."""
    slug = project.name
    deployments = k8s_objects(project, "Deployment")
    return {"default": deployments[f"{slug}-worker"], "bulk": deployments[f"{slug}-worker-bulk"]}


def secret_keys(project: Path) -> dict[str, str]:
    """The Secret's keys and placeholder values, from the example of the generator's env file."""
    lines = (project / K8S_DIR / "secrets.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def image_user(project: Path) -> tuple[int, int]:
    [user] = [item["value"] for item in final_stage(project) if item["instruction"] == "USER"][-1:]
    uid, gid = user.split(":")
    return int(uid), int(gid)


def quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for unit, factor in units.items():
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    return float(value)


def compose_default(value: str) -> str:
    """`${VAR:-default}` -> default; anything else as it is."""
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    return match.group(1) if match else value


def test_kubernetes_manifests_pass_kubernetes_validate_strict(
    k8s: tuple[Path, dict[str, Any]],
) -> None:
    project, _ = k8s
    folder = project / K8S_DIR
    files = kustomization(project)["resources"]
    documents = k8s_documents(project)
    custom = [(f, d) for f, d in documents if d["apiVersion"].startswith("keda.sh/")]
    built_in = [(f, d) for f, d in documents if (f, d) not in custom]
    # Every schema it ships: the oldest says the manifests need no newer cluster.
    for version in sorted({all_k8s_versions()[0], all_k8s_versions()[-1]}):
        result = run(
            [str(BIN / "kubernetes-validate"), "--strict", "-k", version, *files], cwd=folder
        )
        passed = re.findall(r"^INFO (\S+) passed for resource (\S+) against", result.stdout, re.M)
        assert sorted(passed) == sorted(
            (f, f"{d['kind'].lower()}/{d['metadata']['name']}") for f, d in built_in
        ), result.stdout
        # Its only warnings: no schema for KEDA's kind, which the next tests check instead.
        warned = re.findall(
            r"^WARN (\S+) Couldn't find schema for kind (\S+) with api version (\S+)",
            result.stdout,
            re.M,
        )
        assert sorted(warned) == sorted((f, d["kind"], d["apiVersion"]) for f, d in custom), (
            result.stdout
        )
        assert "ERROR" not in result.stdout


def test_keda_scales_each_worker_on_its_queues_lag_from_the_web_metrics(render: Render) -> None:
    project = render("cookiecutter", K8S_OPTION_SET)
    package = project.name.replace("-", "_")
    definitions_file = (
        importlib.resources.files("kubernetes_validate")
        / "kubernetes-json-schema"
        / f"v{all_k8s_versions()[-1]}-local-strict"
        / "_definitions.json"
    )
    definitions = json.loads(definitions_file.read_text())
    registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
    validator = Draft202012Validator(SCALED_OBJECT_SCHEMA, registry=registry)
    trigger_validator = Draft202012Validator(PROMETHEUS_TRIGGER_METADATA)
    # The gauge the web serves: age of the oldest ready job, labelled by queue name.
    metrics = (project / "src" / package / "metrics.py").read_text()
    lag = re.search(r'QUEUE_LAG = Gauge\(\s*"(\w+)",\s*"[^"]*",\s*\["queue"\]', metrics)
    assert lag, "metrics.py has no QUEUE_LAG gauge labelled by queue"
    config = k8s_objects(project, "ConfigMap")[project.name]["data"]
    queue_names = {"default": config["QUEUE_NAME"], "bulk": config["BULK_QUEUE_NAME"]}

    scaled = k8s_objects(project, "ScaledObject")
    workers = worker_deployments(project)
    assert len(scaled) == len(workers)
    for key, deployment in workers.items():
        [scaler] = [
            s
            for s in scaled.values()
            if s["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        ]
        errors = [e.message for e in validator.iter_errors(scaler)]
        assert errors == [], scaler["metadata"]["name"]
        spec = scaler["spec"]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]  # cron needs a worker
        assert "replicas" not in deployment["spec"], "apply would reset what KEDA set"
        [trigger] = spec["triggers"]
        assert trigger["type"] == "prometheus"
        assert trigger["metricType"] == "Value"  # one lag per queue, not a per-pod share
        assert [e.message for e in trigger_validator.iter_errors(trigger["metadata"])] == []
        query = re.fullmatch(r'max\((\w+)\{queue="([^"]+)"\}\)', trigger["metadata"]["query"])
        assert query, trigger["metadata"]["query"]
        assert query.groups() == (lag.group(1), queue_names[key])
        assert float(trigger["metadata"]["threshold"]) > 0
        assert trigger["metadata"]["ignoreNullValues"] == "false"

    # Prometheus finds the web's /metrics (where the gauge is) and each worker's own port.
    web = k8s_objects(project, "Deployment")[f"{project.name}-web"]["spec"]["template"]
    assert web["metadata"]["annotations"]["prometheus.io/port"] == "8000"
    assert web["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    worker_config = k8s_objects(project, "ConfigMap")[f"{project.name}-worker"]["data"]
    assert worker_config["WORKER_METRICS_PORT"] == "9100"
    for deployment in workers.values():
        pod = deployment["spec"]["template"]
        [container] = pod["spec"]["containers"]
        assert {"name": "metrics", "containerPort": 9100} in container["ports"]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9100"


def test_without_metrics_the_workers_scale_on_cpu(k8s_without_metrics: Path) -> None:
    project = k8s_without_metrics
    assert k8s_objects(project, "ScaledObject") == {}
    autoscalers = k8s_objects(project, "HorizontalPodAutoscaler")
    workers = worker_deployments(project)
    assert sorted(a["spec"]["scaleTargetRef"]["name"] for a in autoscalers.values()) == sorted(
        d["metadata"]["name"] for d in workers.values()
    )
    for autoscaler in autoscalers.values():
        [metric] = autoscaler["spec"]["metrics"]
        assert metric["type"] == "Resource"
        assert metric["resource"]["name"] == "cpu"
        assert autoscaler["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    # Utilization is a share of the request: every worker container must request CPU.
    for deployment in workers.values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "cpu" in container["resources"]["requests"]
    # Nothing of the metrics answer is left.
    for path in (project / K8S_DIR).iterdir():
        text = path.read_text()
        assert "prometheus" not in text.lower(), path.name
        assert "WORKER_METRICS_PORT" not in text, path.name
        assert "9100" not in text, path.name


def assert_locked_down_and_sized(pod: dict[str, Any], uid: int, gid: int, name: str) -> None:
    """A pod's spec: no API token, no service links, every container as the image's user without
    privileges on a read-only root (/tmp on a volume of the pod's own), with requests and a
    memory limit."""
    assert pod["automountServiceAccountToken"] is False, name
    assert pod["enableServiceLinks"] is False, name  # no <SERVICE>_PORT settings
    assert "initContainers" not in pod, name
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for container in pod["containers"]:
        where = f"{name}/{container['name']}"
        context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        assert context["runAsNonRoot"] is True, where
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not context.get("privileged", False), where

        resources = container["resources"]
        assert set(resources["requests"]) >= {"cpu", "memory"}, where
        assert quantity(resources["limits"]["memory"]) >= quantity(
            resources["requests"]["memory"]
        ), where

        # The read-only root leaves /tmp writable, on a volume of the pod's own.
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], where
        assert all(volume in volumes for volume in mounts.values()), where


def test_every_pod_runs_as_the_image_user_locked_down_probed_and_sized(
    k8s: tuple[Path, dict[str, Any]],
) -> None:
    project, _ = k8s
    uid, gid = image_user(project)
    deployments = k8s_objects(project, "Deployment")
    assert len(deployments) == 3  # web and a worker per queue
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert_locked_down_and_sized(pod, uid, gid, name)
        for container in pod["containers"]:
            where = f"{name}/{container['name']}"
            assert "livenessProbe" in container, where
            if container["name"] == "web":
                assert "httpGet" in container["readinessProbe"], where
            else:  # a worker: started once its heartbeat is there, then kept alive by it
                assert container["startupProbe"]["exec"] == container["livenessProbe"]["exec"]
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container:
                    assert container[probe]["timeoutSeconds"] >= 2, f"{where} {probe}"


def test_web_runs_the_image_command_and_probes_the_health_routes(
    k8s: tuple[Path, dict[str, Any]],
) -> None:
    project, answers = k8s
    package = project.name.replace("-", "_")
    [cmd] = [item["value"] for item in final_stage(project) if item["instruction"] == "CMD"]
    deployment = k8s_objects(project, "Deployment")[f"{project.name}-web"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == json.loads(cmd)
    assert container["command"][container["command"].index("--port") + 1] == "8000"
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]

    health = (project / "src" / package / "web" / "routes" / "health.py").read_text()
    prefix = re.search(r'APIRouter\(prefix="([^"]+)"', health)
    routes = {prefix.group(1) + path for path in re.findall(r'@router\.get\(\s*"([^"]+)"', health)}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert {"/health/live", "/health/ready"} <= routes

    [service] = k8s_objects(project, "Service").values()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http"}]

    env = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in container["env"]}
    assert ("API_KEY" in env) is answers.get("use_api_key", False)


def test_workers_run_a_queue_each_and_get_their_stop_grace_period_as_sigkill_delay(
    k8s: tuple[Path, dict[str, Any]],
) -> None:
    project, _ = k8s
    slug, package = project.name, project.name.replace("-", "_")
    worker_config_name = f"{slug}-worker"
    worker_config = k8s_objects(project, "ConfigMap")[worker_config_name]["data"]
    grace = int(worker_config["STOP_GRACE_PERIOD"])
    commands = {"default": [slug, "worker"], "bulk": [slug, "worker", "--queue", "bulk"]}
    probes = {
        "default": ["python", "-m", f"{package}.worker.probe"],
        "bulk": ["python", "-m", f"{package}.worker.probe", "bulk"],
    }
    for key, deployment in worker_deployments(project).items():
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["command"] == commands[key]
        assert container["livenessProbe"]["exec"]["command"] == probes[key]
        # SIGKILL comes when the worker's own shutdown budget ends: the same number.
        assert pod["terminationGracePeriodSeconds"] == grace, key
        config_maps = [ref["configMapRef"]["name"] for ref in container["envFrom"]]
        assert worker_config_name in config_maps
        assert all(item["name"] != "STOP_GRACE_PERIOD" for item in container.get("env", []))
    # Derived from the grace period, as the settings do when it is unset (completion_wait).
    assert all(
        "JOB_COMPLETION_WAIT" not in doc.get("data", {}) for _, doc in k8s_documents(project)
    )
    web_config = k8s_objects(project, "ConfigMap")[slug]["data"]
    assert "STOP_GRACE_PERIOD" not in web_config


def test_config_and_secret_carry_what_compose_gives_each_service(
    k8s: tuple[Path, dict[str, Any]],
) -> None:
    project, answers = k8s
    slug = project.name
    services = yaml.safe_load((project / "compose.yaml").read_text())["services"]
    config_maps = k8s_objects(project, "ConfigMap")
    shared, worker_only = config_maps[slug]["data"], config_maps[f"{slug}-worker"]["data"]
    secrets = secret_keys(project)
    assert all(isinstance(value, str) for value in {**shared, **worker_only}.values())

    # REDIS_URL may carry a password: Secret, not ConfigMap.
    assert "REDIS_URL" in secrets
    assert "REDIS_URL" not in shared
    expected_secrets = {"REDIS_URL", "BULK_REDIS_URL", "WEBHOOK_SECRET", "OPERATOR_KEY"} | (
        {"API_KEY"} if answers.get("use_api_key") else set()
    )
    if answers.get("use_sentry", True):
        expected_secrets.add("SENTRY_DSN")  # it holds the Sentry project's key
    if answers.get("database") == "postgres":
        expected_secrets.add("DATABASE_URL")  # it holds the database's password
    assert set(secrets) == expected_secrets
    web_env = {k: compose_default(str(v)) for k, v in services["web"]["environment"].items()}
    assert set(shared) | set(secrets) == set(web_env)
    for key, value in shared.items():
        assert value == web_env[key], key
    worker_env = {k: compose_default(str(v)) for k, v in services["worker"]["environment"].items()}
    assert set(worker_only) == set(worker_env) - set(web_env)
    for key, value in worker_only.items():
        assert value == worker_env[key], key

    # Each pod takes from the Secret only what it needs: the API and operator keys go to the web
    # alone.
    generated = kustomization(project)["secretGenerator"]
    for name, deployment in k8s_objects(project, "Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            refs = [item["valueFrom"]["secretKeyRef"] for item in container.get("env", [])]
            assert all(ref["name"] == generated[0]["name"] for ref in refs), name
            keys = {ref["key"] for ref in refs}
            assert keys <= set(secrets), name
            assert {"REDIS_URL", "BULK_REDIS_URL", "WEBHOOK_SECRET"} <= keys, name
            assert ("API_KEY" in keys) is (name.endswith("-web") and "API_KEY" in secrets), name
            assert ("OPERATOR_KEY" in keys) is name.endswith("-web"), name
            assert ("SENTRY_DSN" in keys) is ("SENTRY_DSN" in secrets), name
            assert ("DATABASE_URL" in keys) is ("DATABASE_URL" in secrets), name
            assert all("secretRef" not in ref for ref in container["envFrom"]), name


def test_the_kustomization_lists_every_file_and_every_name_resolves(
    k8s: tuple[Path, dict[str, Any]],
) -> None:
    project, _ = k8s
    folder = project / K8S_DIR
    spec = kustomization(project)
    manifests = sorted(p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(spec["resources"]) == manifests
    # The Secret comes from secrets.env, which git ignores; only its example is shipped.
    [generator] = spec["secretGenerator"]
    assert generator == {"name": project.name, "envs": ["secrets.env"]}
    assert "secrets.env" in (folder / ".gitignore").read_text().splitlines()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*manifests, "kustomization.yaml", "README.md", ".gitignore", "secrets.env.example"]
    )

    deployments = k8s_objects(project, "Deployment")
    config_maps = set(k8s_objects(project, "ConfigMap"))
    [image] = spec["images"]
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
    for name, workload in {**deployments, **k8s_objects(project, "Job")}.items():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            assert container["image"] == image["name"], name  # so `images` retags every pod
            for source in container["envFrom"]:
                assert source["configMapRef"]["name"] in config_maps, name
    targets = [
        doc["spec"]["scaleTargetRef"]["name"]
        for _, doc in k8s_documents(project)
        if doc["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
    ]
    assert sorted(targets) == sorted(
        d["metadata"]["name"] for d in worker_deployments(project).values()
    )


def test_with_a_database_a_job_migrates_it_before_the_rollout(
    k8s: tuple[Path, dict[str, Any]],
) -> None:
    project, answers = k8s
    slug, folder = project.name, project / K8S_DIR
    jobs = k8s_objects(project, "Job")
    if answers.get("database", "none") != "postgres":
        assert jobs == {}
        assert not (folder / "migrate.yaml").exists()
        # Nothing of the database answer is left, not even in a comment or the README.
        for path in folder.iterdir():
            text = path.read_text()
            assert "DATABASE_URL" not in text, path.name
            assert "postgres" not in text.lower(), path.name
            assert "migrat" not in text.lower(), path.name
        return

    [job] = jobs.values()
    assert job["metadata"]["name"] == f"{slug}-migrate"
    spec = job["spec"]
    # Bounded: a few tries, a deadline for a migration that hangs, and the finished Job removed
    # in time (its pod template is immutable: a new image needs a new Job).
    assert 1 <= spec["backoffLimit"] <= 5
    assert 0 < spec["activeDeadlineSeconds"] <= 3600
    assert spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # each try a pod of its own, whose log stays
    assert_locked_down_and_sized(pod, *image_user(project), job["metadata"]["name"])

    # compose's one-shot migrate command, from the image every pod runs.
    [container] = pod["containers"]
    services = yaml.safe_load((project / "compose.yaml").read_text())["services"]
    assert container["command"] == services["migrate"]["command"] == [slug, "migrate"]
    # The shared settings, and from the Secret only DATABASE_URL: it never talks to Redis.
    assert [source["configMapRef"]["name"] for source in container["envFrom"]] == [slug]
    [generator] = kustomization(project)["secretGenerator"]
    refs = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in container["env"]}
    assert refs == {"DATABASE_URL": {"name": generator["name"], "key": "DATABASE_URL"}}
    assert "DATABASE_URL" in secret_keys(project)
    # No Deployment takes the Job's pod for one of its own.
    labels = spec["template"]["metadata"]["labels"]
    for name, deployment in k8s_objects(project, "Deployment").items():
        assert not deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), name

    # The README's order: the old Job deleted, then everything but the Deployments (and what
    # serves or scales them) applied, the Job waited for, and only then the rest.
    readme = (folder / "README.md").read_text()
    steps = [
        f"kubectl delete job {slug}-migrate --ignore-not-found",
        "kubectl apply -k deploy/kubernetes -l ",
        "kubectl wait --for=condition=complete --timeout=",
        "kubectl apply -k deploy/kubernetes\n",
    ]
    at = [readme.find(step) for step in steps]
    assert -1 not in at, readme
    assert at == sorted(at), readme
    assert f"job/{slug}-migrate\n" in readme[at[2] :]
    selector = re.search(r"-l '([\w./-]+) notin \(([\w,-]+)\)'", readme[at[1] :])
    assert selector, readme
    key, left_out = selector.group(1), set(selector.group(2).split(","))
    for file, document in k8s_documents(project):
        applied = document["metadata"].get("labels", {}).get(key) not in left_out
        # notin also selects what has no such label: the ConfigMaps (and the generated Secret).
        expected = document["kind"] in ("Job", "ConfigMap")
        assert applied is expected, (file, document["kind"], document["metadata"]["name"])


@pytest.mark.slow
def test_the_secret_placeholders_are_refused_and_the_manifests_settings_accepted(
    synced: Callable[[str], Path], tmp_path: Path
) -> None:
    project = synced(K8S_OPTION_SET)
    package = project.name.replace("-", "_")
    config_maps = k8s_objects(project, "ConfigMap")
    worker_config = config_maps[f"{project.name}-worker"]["data"]
    pod_env = {**config_maps[project.name]["data"], **worker_config, **secret_keys(project)}
    code = (
        f"from {package}.settings import Settings\n"
        "s = Settings()\n"
        "print(s.stop_grace_period, s.completion_wait)\n"
    )

    def settings(**overrides: str) -> subprocess.CompletedProcess[str]:
        # In an empty folder: no .env next to it adds values the pods would not have.
        return subprocess.run(
            [str(project / ".venv" / "bin" / "python"), "-c", code],
            cwd=tmp_path,
            env=clean_env(**{**pod_env, **overrides}),
            capture_output=True,
            text=True,
            check=False,
        )

    placeholders = settings()
    assert placeholders.returncode != 0
    assert "redis_url" in placeholders.stderr
    assert "scheme" in placeholders.stderr
    redis_url = "redis://:a-password@redis:6379/0"
    # With a database, its URL's placeholder is refused too (named, its value never shown); the
    # checks after it give a real one.
    real: dict[str, str] = {"REDIS_URL": redis_url}
    if "DATABASE_URL" in pod_env:
        placeholder_database = settings(REDIS_URL=redis_url)
        assert placeholder_database.returncode != 0
        assert "database_url" in placeholder_database.stderr.lower()
        assert pod_env["DATABASE_URL"] not in placeholder_database.stderr
        real["DATABASE_URL"] = "postgresql://app:a-password@postgres:5432/app"
    placeholder_key = settings(**real)
    assert placeholder_key.returncode != 0
    assert "API_KEY is a placeholder" in placeholder_key.stderr

    placeholder_operator_key = settings(**real, API_KEY=secrets.token_urlsafe(32))
    assert placeholder_operator_key.returncode != 0
    assert "OPERATOR_KEY is a placeholder" in placeholder_operator_key.stderr

    accepted = settings(
        **real,
        API_KEY=secrets.token_urlsafe(32),
        OPERATOR_KEY=secrets.token_urlsafe(32),
    )
    assert accepted.returncode == 0, accepted.stderr
    grace, completion_wait = map(int, accepted.stdout.split())
    for deployment in worker_deployments(project).values():
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == grace
    assert 0 < completion_wait < grace
