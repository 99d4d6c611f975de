"""deploy/k8s: the base and the dev overlay render with kustomize (kubectl's), every object
validates offline against the Kubernetes schemas (kubernetes-validate), and the manifests keep
their promises: probes, unprivileged pods, autoscalers and disruption budgets that find their
pods, only the gateway reachable from outside, secrets only by reference, every variable a real
setting, services that wait for the migration Job's schema, and the optional tracing component
that points the four services at a collector."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.harness import drop_databases
from ticketing.shared.migrations import upgrade
from ticketing.shared.settings import DATABASE_SERVICES, PREFIX, SERVICES, Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
TRACING = K8S / "components" / "tracing"
TARGETS = ("base", "overlays/dev")
# The oldest Kubernetes the manifests promise to fit, and the newest the schemas know.
KUBERNETES_VERSIONS = (
    "1.29",
    kubernetes_validate.utils.major_minor(kubernetes_validate.latest_version()),
)
SETTINGS = frozenset(PREFIX + field.name.upper() for field in dataclasses.fields(Settings))
SECRET_SETTINGS = frozenset(
    {
        "TICKETING_MYSQL_URL",
        "TICKETING_REDIS_URL",
        "TICKETING_BOOKING_CLIENT_SECRET",
        "TICKETING_ORDER_CLIENT_SECRET",
    }
)
SECRETS_NEEDED = {
    "inventory": {"TICKETING_MYSQL_URL"},
    "booking": {"TICKETING_MYSQL_URL", "TICKETING_BOOKING_CLIENT_SECRET"},
    "order": {"TICKETING_MYSQL_URL", "TICKETING_ORDER_CLIENT_SECRET"},
    "gateway": {"TICKETING_REDIS_URL"},
}
CREDENTIALS_IN_URL = re.compile(r"://[^/@\s]*:[^/@\s]+@")
MONITORING_LABELS = {"ticketing/scrape-metrics": "true"}

Manifest = dict[str, Any]


def kustomize_major(kubectl: str) -> int:
    result = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    match = re.match(r"v(\d+)\.", json.loads(result.stdout or "{}").get("kustomizeVersion", ""))
    return int(match.group(1)) if match else 0


@functools.cache
def kubectl() -> str:
    """kubectl with kustomize 5 or newer: the machine's, else the one scripts/install.sh put in
    the virtualenv."""
    for candidate in (shutil.which("kubectl"), str(Path(sys.executable).parent / "kubectl")):
        if candidate and Path(candidate).is_file() and kustomize_major(candidate) >= 5:
            return candidate
    raise AssertionError("no kubectl with kustomize >= 5: run scripts/install.sh")


@functools.cache
def render(target: str) -> tuple[Manifest, ...]:
    return build(K8S / target)


def build(kustomization: Path) -> tuple[Manifest, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(objects: tuple[Manifest, ...], kind: str) -> dict[str, Manifest]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: tuple[Manifest, ...]) -> Iterator[tuple[str, Manifest]]:
    for kind in ("Deployment", "Job"):
        for name, obj in of_kind(objects, kind).items():
            yield f"{kind}/{name}", obj["spec"]["template"]["spec"]


def containers(spec: Manifest) -> list[Manifest]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector of matchLabels only (matchExpressions would need this test extended)."""
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def pod_labels(deployment: Manifest) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_every_object_validates_against_the_kubernetes_schemas(target: str, version: str) -> None:
    objects = render(target)
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "NetworkPolicy",
        "ConfigMap",
    } <= kinds
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} at {path}: {error.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("target", TARGETS)
def test_every_service_is_a_deployment_with_both_probes(target: str) -> None:
    objects = render(target)
    deployments = of_kind(objects, "Deployment")
    assert set(deployments) == set(SERVICES)
    images = {c["image"] for _, spec in pod_specs(objects) for c in containers(spec)}
    assert len(images) == 1, images  # one image for every service, the Job and the waits
    defaults = Settings()
    for name, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["args"] == ["serve", name]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": getattr(defaults, f"{name}_port")}
        probes = {
            kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
            for kind in ("readinessProbe", "livenessProbe")
        }
        assert probes == {
            "readinessProbe": ("/health/ready", "http"),
            "livenessProbe": ("/health/live", "http"),
        }, name


@pytest.mark.parametrize("target", TARGETS)
def test_pods_run_unprivileged_with_resources(target: str) -> None:
    checked = 0
    for where, spec in pod_specs(render(target)):
        assert spec["automountServiceAccountToken"] is False, where
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] > 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in containers(spec):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, where
            checked += 1
    assert checked == 4 + 3 + 1  # four services, three waits for the schema, the migration


@pytest.mark.parametrize("target", TARGETS)
def test_autoscalers_own_the_replicas_of_existing_deployments(target: str) -> None:
    objects = render(target)
    deployments = of_kind(objects, "Deployment")
    autoscalers = of_kind(objects, "HorizontalPodAutoscaler")
    targets = set()
    for name, hpa in autoscalers.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment"), name
        assert ref["name"] in deployments, name
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], name
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        (container,) = deployments[ref["name"]]["spec"]["template"]["spec"]["containers"]
        assert container["resources"]["requests"]["cpu"], "utilization is relative to requests"
        targets.add(ref["name"])
    assert targets == {"gateway", "booking", "order"}
    for name, deployment in deployments.items():
        # A replica count in the Deployment would fight the autoscaler on every apply.
        assert ("replicas" in deployment["spec"]) == (name not in targets), name


@pytest.mark.parametrize("target", TARGETS)
def test_disruption_budgets_and_services_each_find_one_deployments_pods(target: str) -> None:
    objects = render(target)
    deployments = of_kind(objects, "Deployment")
    job_pods = [
        j["spec"]["template"]["metadata"]["labels"] for j in of_kind(objects, "Job").values()
    ]
    for kind in ("PodDisruptionBudget", "Service"):
        covered = []
        for name, obj in of_kind(objects, kind).items():
            selector = obj["spec"]["selector"]
            if kind == "Service":
                selector = {"matchLabels": selector}
            matched = [d for d, dep in deployments.items() if selects(selector, pod_labels(dep))]
            assert matched == [name], (kind, name, matched)
            assert not any(selects(selector, labels) for labels in job_pods), (kind, name)
            covered.append(name)
        assert sorted(covered) == sorted(deployments), kind
    for name, budget in of_kind(objects, "PodDisruptionBudget").items():
        assert budget["spec"]["maxUnavailable"] == 1, name
    for name, service in of_kind(objects, "Service").items():
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] in {p["name"] for p in container["ports"]}, name
    exposed = {
        n for n, s in of_kind(objects, "Service").items() if s["spec"]["type"] != "ClusterIP"
    }
    assert exposed == (set() if target == "base" else {"gateway"})


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str
    labels: Mapping[str, str]
    in_namespace: bool
    namespace_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


def peer_matches(rule_peer: Manifest, source: Peer) -> bool:
    assert set(rule_peer) <= {"podSelector", "namespaceSelector"}, rule_peer
    if "namespaceSelector" in rule_peer:
        if not selects(rule_peer["namespaceSelector"], source.namespace_labels):
            return False
    elif not source.in_namespace:
        return False
    return "podSelector" not in rule_peer or selects(rule_peer["podSelector"], source.labels)


def admitted(policies: list[Manifest], source: Peer, labels: Mapping[str, str], port: int) -> bool:
    """Whether NetworkPolicy semantics let ``source`` open a TCP connection to ``port`` of a
    pod of this namespace with ``labels``."""
    applicable = [
        p["spec"]
        for p in policies
        if "Ingress" in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels)
    ]
    if not applicable:
        return True  # a pod no policy selects is not isolated
    for spec in applicable:
        for rule in spec.get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(
                p["port"] == port and p.get("protocol", "TCP") == "TCP" for p in ports
            ):
                continue
            if not rule.get("from") or any(peer_matches(f, source) for f in rule["from"]):
                return True
    return False


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies_let_in_only_what_the_services_need(target: str) -> None:
    objects = render(target)
    policies = list(of_kind(objects, "NetworkPolicy").values())
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and p["spec"]["policyTypes"] == ["Ingress"]
        and not p["spec"].get("ingress")
    ]
    assert len(deny) == 1, "a default deny of ingress for the namespace"
    deployments = of_kind(objects, "Deployment")
    sources = [Peer(name, pod_labels(d), in_namespace=True) for name, d in deployments.items()]
    sources += [
        Peer(n, j["spec"]["template"]["metadata"]["labels"], True)
        for n, j in of_kind(objects, "Job").items()
    ]
    sources += [
        Peer("outside", {}, in_namespace=False),
        # A pod elsewhere that wears the gateway's labels is still outside.
        Peer("impostor", pod_labels(deployments["gateway"]), in_namespace=False),
        Peer("monitoring", {}, in_namespace=False, namespace_labels=MONITORING_LABELS),
    ]
    allowed = set()
    for dest, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        (port,) = container["ports"]
        for source in sources:
            if admitted(policies, source, pod_labels(deployment), port["containerPort"]):
                allowed.add((source.name, dest))
            # Any other port of the pod stays closed to everyone.
            assert not admitted(policies, source, pod_labels(deployment), 9999), (source, dest)
    expected = {(source.name, "gateway") for source in sources}
    expected |= {("gateway", "inventory"), ("booking", "inventory"), ("order", "inventory")}
    expected |= {("gateway", "booking")}
    expected |= {("monitoring", dest) for dest in deployments}
    assert allowed == expected


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_the_base_holds_no_secret_value() -> None:
    objects = render("base")
    assert not of_kind(objects, "Secret"), "the operator creates the Secret"
    for where, spec in pod_specs(objects):
        for container in containers(spec):
            for name, entry in env_of(container).items():
                assert "value" not in entry, (where, name)  # settings come from the ConfigMap
                if name in SECRET_SETTINGS:
                    ref = entry["valueFrom"]["secretKeyRef"]
                    assert (ref["name"], ref["key"]) == ("ticketing-secrets", name), where
    for target in TARGETS:
        for name, config in of_kind(render(target), "ConfigMap").items():
            for key, value in config["data"].items():
                assert key not in SECRET_SETTINGS, (target, name, key)
                assert not CREDENTIALS_IN_URL.search(value), (target, name, key)


@pytest.mark.parametrize("target", TARGETS)
def test_each_service_gets_the_secrets_it_needs_and_no_other(target: str) -> None:
    objects = render(target)
    for name, deployment in of_kind(objects, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        refs = {n for n, e in env_of(container).items() if "secretKeyRef" in e.get("valueFrom", {})}
        assert refs == SECRETS_NEEDED[name], name
    (job,) = of_kind(objects, "Job").values()
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert set(env_of(migrate)) == {"TICKETING_MYSQL_URL"}


@pytest.mark.parametrize("target", TARGETS)
def test_every_variable_named_is_a_real_setting(target: str) -> None:
    objects = render(target)
    configs = of_kind(objects, "ConfigMap")
    secrets = of_kind(objects, "Secret")
    for where, spec in pod_specs(objects):
        for container in containers(spec):
            assert set(env_of(container)) <= SETTINGS, (where, set(env_of(container)) - SETTINGS)
            for source in container.get("envFrom", []):
                (config,) = source.values()
                assert set(configs[config["name"]]["data"]) <= SETTINGS, where
            for name, entry in env_of(container).items():
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref and target != "base":  # the overlay's Secret has every key asked for
                    assert name in secrets[ref["name"]]["data"], (where, name)
    for secret in secrets.values():
        assert set(secret["data"]) <= SETTINGS


def test_the_dev_overlay_replaces_every_placeholder_of_the_base() -> None:
    def placeholders(target: str) -> set[str]:
        configs = of_kind(render(target), "ConfigMap").values()
        return {k for c in configs for k, v in c["data"].items() if ".invalid" in v}

    assert placeholders("base") == {"TICKETING_KAFKA_BOOTSTRAP", "TICKETING_OIDC_ISSUER"}
    assert placeholders("overlays/dev") == set()
    objects = render("overlays/dev")
    (namespace,) = of_kind(objects, "Namespace")
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]


@pytest.mark.parametrize("target", TARGETS)
def test_the_migration_job_upgrades_and_database_services_wait_for_it(
    target: str, tmp_path: Path
) -> None:
    objects = render(target)
    (job,) = of_kind(objects, "Job").values()
    spec = job["spec"]["template"]["spec"]
    (migrate,) = spec["containers"]
    assert migrate["args"] == ["db", "upgrade"]
    assert spec["restartPolicy"] == "Never"
    script = (K8S / "base" / "wait_for_schema.py").read_text()
    for name, deployment in of_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        waits = pod.get("initContainers", [])
        if name not in DATABASE_SERVICES:
            assert not waits, name
            continue
        (wait,) = waits
        command, path = wait_command(objects, pod, wait, tmp_path / name)
        assert command[0] == "python", command
        assert command[2:] == [name], command
        assert path.read_text() == script, "the ConfigMap carries the script as it is in git"


def wait_command(
    objects: tuple[Manifest, ...], pod: Manifest, wait: Manifest, root: Path
) -> tuple[list[str], Path]:
    """The wait's command, with the script it names written under ``root`` (a temporary folder)
    from the ConfigMap volume it is mounted from, and that path."""
    script_path = Path(wait["command"][1])
    (mount,) = [m for m in wait["volumeMounts"] if script_path.is_relative_to(m["mountPath"])]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    data = of_kind(objects, "ConfigMap")[volume["configMap"]["name"]]["data"]
    content = data[str(script_path.relative_to(mount["mountPath"]))]
    local = root / script_path.relative_to("/")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(content)
    return list(wait["command"]), local


def test_the_wait_for_schema_holds_a_pod_until_the_migration_ran(tmp_path: Path) -> None:
    """The inventory pod's init container, run as rendered against the real database server:
    it waits while the database is missing and lets the pod start once it is migrated."""
    objects = render("overlays/dev")
    pod = of_kind(objects, "Deployment")["inventory"]["spec"]["template"]["spec"]
    (wait,) = pod["initContainers"]
    command, script = wait_command(objects, pod, wait, tmp_path)
    settings = dataclasses.replace(
        Settings.from_env(), db_prefix=f"ticketing_test_k8s_{uuid.uuid4().hex[:8]}_"
    )
    env = {
        **os.environ,
        "TICKETING_MYSQL_URL": settings.mysql_url,
        "TICKETING_DB_PREFIX": settings.db_prefix,
        "TICKETING_ALEMBIC_DIR": str(REPO / "alembic"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    log = tmp_path / "wait.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(script), *command[2:]], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while "waiting for" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        assert "not readable yet" in log.read_text(), log.read_text()
        time.sleep(3)
        assert process.poll() is None, "started before the migration: " + log.read_text()
        upgrade(settings, "inventory")
        assert process.wait(timeout=30) == 0, log.read_text()
        assert "the image's head" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        asyncio.run(drop_databases(settings))


def overlay_with_tracing(root: Path, endpoint: str | None) -> tuple[Manifest, ...]:
    """An operator's overlay as deploy/k8s/README.md describes it: the dev overlay's objects in
    their namespace, the tracing component, and (unless None) the collector's address patched
    into its ConfigMap."""
    root.mkdir()
    kustomization: Manifest = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "ticketing-dev",
        # kustomize takes relative paths only.
        "resources": [os.path.relpath(K8S / "overlays" / "dev", root)],
        "components": [os.path.relpath(TRACING, root)],
    }
    if endpoint is not None:
        patch = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ticketing-tracing"},
            "data": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        }
        kustomization["patches"] = [{"patch": yaml.safe_dump(patch)}]
    (root / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return build(root)


def test_the_tracing_component_points_every_service_and_nothing_else_at_the_collector(
    tmp_path: Path,
) -> None:
    endpoint = "http://otel-collector.observability.svc.cluster.local:4318"
    objects = overlay_with_tracing(tmp_path / "traced", endpoint)
    configs = of_kind(objects, "ConfigMap")
    (name,) = [n for n in configs if n.startswith("ticketing-tracing")]
    assert name != "ticketing-tracing", "hashed, so a change rolls the Deployments"
    data = configs[name]["data"]
    # Only OpenTelemetry's standard variables, and no service name: the map serves all four,
    # and each names itself ticketing-<service> by default.
    assert all(key.startswith("OTEL_") for key in data), data
    assert "OTEL_SERVICE_NAME" not in data
    assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
    for variable in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        assert data.get(variable, "http/protobuf") == "http/protobuf", variable
    assert data["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert 0 < float(data["OTEL_TRACES_SAMPLER_ARG"]) <= 1

    traced = set()
    for where, spec in pod_specs(objects):
        for container in containers(spec):
            refs = [source["configMapRef"]["name"] for source in container.get("envFrom", [])]
            if name in refs:
                traced.add(where)
                # Added to the settings, not in their place.
                assert any(ref.startswith("ticketing-config") for ref in refs), where
                assert container in spec["containers"], "the wait for the schema is not traced"
    assert traced == {f"Deployment/{service}" for service in SERVICES}
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)
        assert obj["metadata"].get("namespace", "ticketing-dev") == "ticketing-dev"

    # Forgetting the address leaves a name that never resolves, not a guessed collector.
    forgotten = overlay_with_tracing(tmp_path / "forgotten", None)
    (data,) = [c["data"] for n, c in of_kind(forgotten, "ConfigMap").items() if "tracing" in n]
    host = urlsplit(data["OTEL_EXPORTER_OTLP_ENDPOINT"]).hostname
    assert host is not None
    assert host.endswith(".invalid"), host
