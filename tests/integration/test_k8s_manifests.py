"""deploy/k8s: the base and the dev overlay render with kustomize (kubectl's), every object
validates offline against the Kubernetes schemas (kubernetes-validate), and the manifests keep
their promises: probes, unprivileged pods, autoscalers and disruption budgets that find their
pods, secrets only by reference, and every variable a real setting. Network policies,
migrations and tracing have files of their own."""

from __future__ import annotations

import dataclasses
import re

import kubernetes_validate
import pytest

from tests.integration.k8s_render import (
    KUBERNETES_VERSIONS,
    TARGETS,
    containers,
    env_of,
    of_kind,
    pod_labels,
    pod_specs,
    render,
    selects,
)
from ticketing.shared.settings import PREFIX, SERVICES, Settings

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
