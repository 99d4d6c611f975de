"""deploy/k8s's optional tracing component points the four services, and nothing else, at a
collector."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import yaml

from tests.integration.k8s_render import (
    K8S,
    KUBERNETES_VERSIONS,
    TRACING,
    Manifest,
    build,
    containers,
    of_kind,
    pod_specs,
)
from ticketing.shared.settings import SERVICES


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
