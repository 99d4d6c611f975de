"""deploy/k8s rendered with kustomize (kubectl's, version 5 or newer), and how its objects are read:
by kind, their pod specs and containers, and which pods a selector finds."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
TRACING = K8S / "components" / "tracing"
TARGETS = ("base", "overlays/dev")
# The oldest Kubernetes the manifests promise to fit, and the newest the schemas know.
KUBERNETES_VERSIONS = (
    "1.29",
    kubernetes_validate.utils.major_minor(kubernetes_validate.latest_version()),
)


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


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container.get("env", [])}
