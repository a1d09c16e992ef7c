"""The Kubernetes manifests (config/kubernetes/), checked without a cluster: against the
Kubernetes API schemas by kubernetes-validate (shipped with it: offline), then for what the
gateway needs of them, read from the code where the code decides it (the settings, the routes,
the drain's share of SHUTDOWN_TIMEOUT), so a manifest that drifts from the service fails here.
"""

from __future__ import annotations

import asyncio
import configparser
import functools
import math
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from service.app import create_app
from service.drain import SHARE_OF_TIMEOUT
from service.settings import FIELDS, Settings
from tests.support.factories import SECRET, StartService, auth
from tests.support.paths import ROOT, venv_tool
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream

K8S = ROOT / "config" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
# The oldest release whose schema the manifests must pass: the preStop `sleep` action is on by
# default from 1.30 on. Pinned, so a kubernetes-validate upgrade does not move it.
KUBERNETES_VERSION = "1.30.0"
PLACEHOLDER = "CHANGE-ME"
# Where tempfile.mkdtemp() writes in the pod, whose environment sets no TMPDIR.
POD_TMP = "/tmp"  # noqa: S108

Manifest = dict[str, Any]


@functools.cache
def kustomization() -> Manifest:
    loaded: Manifest = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


def resource_files() -> list[Path]:
    """The files kustomization.yaml applies, in its order."""
    return [K8S / name for name in kustomization()["resources"]]


@functools.cache
def manifests() -> dict[str, Manifest]:
    """Every applied object by kind (one of each here); read once, never changed."""
    out: dict[str, Manifest] = {}
    for path in resource_files():
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in out, f"a second {doc['kind']} in {path.name}"
            out[doc["kind"]] = doc
    return out


def pod_spec() -> Manifest:
    spec: Manifest = manifests()["Deployment"]["spec"]["template"]["spec"]
    return spec


def gateway() -> Manifest:
    (container,) = pod_spec()["containers"]
    assert container["name"] == "gateway"
    found: Manifest = container
    return found


def environment() -> dict[str, str]:
    """What the gateway's environment holds: the ConfigMap, the Secret, then `env` (which wins
    over both in Kubernetes); `valueFrom` entries are resolved for the CPU limit."""
    objects = manifests()
    container = gateway()
    sources = {
        ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]
    }
    assert sources == {
        objects["ConfigMap"]["metadata"]["name"],
        objects["Secret"]["metadata"]["name"],
    }
    env = {**objects["ConfigMap"]["data"], **objects["Secret"]["stringData"]}
    for var in container["env"]:
        env[var["name"]] = var["value"] if "value" in var else str(resolved(var["valueFrom"]))
    return env


def cores(quantity: str) -> float:
    """A CPU quantity ("2", "1500m") in cores."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def resolved(value_from: Manifest) -> int:
    """What the kubelet puts in a `resourceFieldRef` variable for the CPU limit: the limit in
    units of the divisor, rounded up."""
    ref = value_from["resourceFieldRef"]
    assert ref["resource"] == "limits.cpu", ref
    assert ref.get("containerName", "gateway") == "gateway"
    limit = cores(gateway()["resources"]["limits"]["cpu"])
    return math.ceil(limit / cores(str(ref.get("divisor", "1"))))


# -- the schemas --------------------------------------------------------------------------------


def test_kustomization_applies_every_manifest_and_names_the_image() -> None:
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    listed = [p.name for p in resource_files()]
    assert sorted(listed) == sorted(on_disk), "a manifest that kubectl apply -k would skip"
    assert set(manifests()) == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }

    # The image: the compose file's name, tagged with the package's version, and the name
    # kustomize's `images` rewrites (a mismatch would leave the registry unapplied).
    repository, tag = gateway()["image"].rsplit(":", 1)
    compose = yaml.safe_load(COMPOSE.read_text())
    assert repository == compose["services"]["gateway"]["image"].rsplit(":", 1)[0]
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    (image,) = kustomization()["images"]
    assert image["name"] == repository
    assert tag == image["newTag"] == setup["metadata"]["version"]


def test_manifests_follow_the_kubernetes_schemas() -> None:
    files = resource_files()
    result = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # kubernetes-validate passes a kind it has no schema for with a WARN and status 0: every
    # object must have been checked, strictly (no field the API does not know).
    lines = output.splitlines()
    assert not [line for line in lines if not line.startswith("INFO ")], output
    passed = [line for line in lines if " passed for resource " in line]
    assert len(passed) == len(manifests()), output
    assert all(line.endswith(f"against version {KUBERNETES_VERSION[:4]}") for line in passed)


# -- the Deployment -----------------------------------------------------------------------------


def test_probes_ask_the_gateways_readiness_and_liveness_routes() -> None:
    container = gateway()
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    # /readyz is 503 while Redis is down or the pod drains: readiness only. A liveness probe on
    # it would restart every pod during a Redis outage.
    assert readiness["httpGet"]["path"] == "/readyz"
    assert liveness["httpGet"]["path"] == "/healthz"
    routes = {
        route.resource.canonical
        for route in create_app(Settings()).router.routes()
        if route.method == "GET" and route.resource is not None
    }
    assert {"/readyz", "/healthz"} <= routes

    (port,) = container["ports"]
    env = environment()
    for probe in (readiness, liveness):
        assert probe["httpGet"]["port"] == port["name"]
    assert port["containerPort"] == int(env["PORT"]) == 8080
    assert re.search(r"^EXPOSE 8080$", DOCKERFILE.read_text(), re.MULTILINE)
    assert env["LISTEN_HOST"] == "0.0.0.0", "the kubelet probes the pod's IP, not loopback"
    service_port = manifests()["Service"]["spec"]["ports"][0]
    assert service_port["targetPort"] == port["name"]


def test_grace_period_outlasts_the_prestop_sleep_and_the_drain() -> None:
    spec, container = pod_spec(), gateway()
    shutdown_timeout = Settings.from_env(environment()).shutdown_timeout
    # SIGTERM comes after preStop, within the same grace period. Then the waves take
    # SHARE_OF_TIMEOUT of SHUTDOWN_TIMEOUT, and aiohttp waits up to SHUTDOWN_TIMEOUT more for
    # the requests in flight.
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = (SHARE_OF_TIMEOUT + 1) * shutdown_timeout
    assert pre_stop >= 1, "the endpoints' removal needs a moment to reach kube-proxy"
    assert spec["terminationGracePeriodSeconds"] > pre_stop + drain
    # A rollout replaces one pod at a time and keeps the capacity while the old one drains.
    strategy = manifests()["Deployment"]["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_gateway_runs_as_non_root_on_a_read_only_root() -> None:
    spec, container = pod_spec(), gateway()
    pod_ctx, ctx = spec["securityContext"], container["securityContext"]
    user = re.search(r"^USER (\d+)(?::(\d+))?$", DOCKERFILE.read_text(), re.MULTILINE)
    assert user is not None
    assert pod_ctx["runAsNonRoot"] is True
    assert pod_ctx["runAsUser"] == int(user[1]) != 0
    assert pod_ctx["seccompProfile"]["type"] == "RuntimeDefault"
    # Pod Security Standards, "restricted", and a root nobody can write to.
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert "add" not in ctx["capabilities"]
    assert ctx.get("privileged", False) is False
    assert ctx.get("runAsNonRoot", True) is True
    assert ctx.get("seccompProfile", pod_ctx["seccompProfile"])["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False, "nothing but the configuration in the environment"


def test_workers_follow_the_cpu_limit_and_get_a_writable_temp_dir() -> None:
    container, spec = gateway(), pod_spec()
    resources = container["resources"]
    assert resources["requests"] == resources["limits"], "Guaranteed QoS"
    env = environment()
    workers = int(env["WORKERS"])
    (from_limit,) = [v for v in container["env"] if v["name"] == "WORKERS"]
    assert workers == math.ceil(cores(resources["limits"]["cpu"])), from_limit
    if workers > 1:
        # The parent makes PROMETHEUS_MULTIPROC_DIR with tempfile.mkdtemp() (service/server.py):
        # on a read-only root that needs a writable /tmp, which tempfile tries first.
        assert "PROMETHEUS_MULTIPROC_DIR" not in env
        assert not {"TMPDIR", "TEMP", "TMP"} & env.keys()
        volumes = {v["name"]: v for v in spec["volumes"]}
        (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == POD_TMP]
        assert "emptyDir" in volumes[tmp["name"]]
        assert not tmp.get("readOnly", False)
        assert env["REDIS_URL"], "workers share Redis: the embedded broker is one process's"


@pytest.mark.process  # it starts the service: a process-level test among the file checks
async def test_the_pods_environment_serves_and_drains_within_the_grace_period(
    service: StartService, redis_server: RedisServer, tmp_path: Path, room: str
) -> None:
    """The gateway as the manifests start it: the ConfigMap as it is and WORKERS from the CPU
    limit, the Secret's placeholders swapped for the private Redis and the tests' secret, and
    TMPDIR for the emptyDir at /tmp (as root, no root filesystem here is read-only)."""
    spec, container = pod_spec(), gateway()
    temp = tmp_path / "emptydir"
    temp.mkdir()
    env = {**environment(), "REDIS_URL": redis_server.url, "JWT_SECRET": SECRET}
    assert int(env["WORKERS"]) > 1
    srv = await service(**env, TMPDIR=str(temp))  # returns once /readyz is 200: every worker

    async with aiohttp.ClientSession() as http:
        for probe in (container["readinessProbe"], container["livenessProbe"]):
            timeout = aiohttp.ClientTimeout(total=probe["timeoutSeconds"])
            async with http.get(srv.url + probe["httpGet"]["path"], timeout=timeout) as r:
                assert r.status == 200, await r.text()
        # What the parent wrote: its workers' metric files, in the temp dir and nowhere else.
        assert [p.name.startswith("roomlogs-metrics-") for p in temp.iterdir()] == [True]

        async with http.get(f"{srv.url}/api/v1/rooms/{room}/logs", headers=auth()) as resp:
            stream = SSEStream(resp)
            assert (await stream.next()).event == "connected"
            grace = spec["terminationGracePeriodSeconds"]
            budget = grace - container["lifecycle"]["preStop"]["sleep"]["seconds"]
            started = time.monotonic()
            stopping = asyncio.create_task(asyncio.to_thread(srv.stop, signal.SIGTERM, grace))
            ending = await stream.next(timeout=budget)
            status = await stopping
            elapsed = time.monotonic() - started

    assert ending.event == "unavailable"
    assert '"reason":"shutdown"' in ending.data.replace(" ", "")
    assert status == 0, srv.output()
    assert elapsed < budget, "the kubelet would have sent SIGKILL"
    assert list(temp.iterdir()) == [], "the parent removes its metrics directory"


# -- the configuration --------------------------------------------------------------------------


def test_configuration_is_every_setting_once_and_parses() -> None:
    objects = manifests()
    config, secret = objects["ConfigMap"]["data"], objects["Secret"]["stringData"]
    from_env = {v["name"] for v in gateway()["env"]}
    known = {spec.env for spec in FIELDS}
    everywhere = [*config, *secret, *from_env]
    assert len(everywhere) == len(set(everywhere)), "a variable set in two places"
    assert set(everywhere) - known == set(), "not a setting of service/settings.py"
    assert known - set(everywhere) == set(), "a setting the ConfigMap does not show"
    # What the pod would start with: the values parse, together (a bad one stops start-up).
    settings = Settings.from_env(environment())
    assert settings.redis_url is not None
    assert settings.log_format == "json"


def test_secret_holds_only_marked_placeholders() -> None:
    secret = manifests()["Secret"]
    assert "data" not in secret, "stringData: base64 would hide what is committed"
    values = secret["stringData"]
    assert set(values) == {"JWT_SECRET", "REDIS_URL"}
    for name, value in values.items():
        assert PLACEHOLDER in value, f"{name} is not a placeholder: never commit a real secret"
    # Left as it is, the placeholder Redis never resolves: no pod gets ready.
    assert re.fullmatch(rf"redis://{PLACEHOLDER}\.invalid:\d+/\d+", values["REDIS_URL"])


# -- Service, PodDisruptionBudget, HorizontalPodAutoscaler --------------------------------------


@pytest.mark.parametrize("kind", ["Service", "PodDisruptionBudget"])
def test_selectors_pick_the_gateways(kind: str) -> None:
    objects = manifests()
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = objects[kind]["spec"]["selector"]
    selector = selector.get("matchLabels", selector)
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()


def test_disruptions_and_scaling_go_one_pod_at_a_time() -> None:
    objects = manifests()
    deployment, pdb, hpa = (
        objects["Deployment"],
        objects["PodDisruptionBudget"],
        objects["HorizontalPodAutoscaler"],
    )
    assert pdb["spec"]["maxUnavailable"] == 1
    # Every pod is unready during a Redis outage; node drains must still go on.
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"

    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"], "the HPA owns the count; apply would reset it"
    assert hpa["spec"]["minReplicas"] >= 2, "one pod drained or evicted still leaves one"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in gateway()["resources"]["requests"], "utilisation is of the request"
    scale_down = hpa["spec"]["behavior"]["scaleDown"]
    assert [(p["type"], p["value"]) for p in scale_down["policies"]] == [("Pods", 1)]
