"""deploy/k8s network policies let in only what the services need: from the gateway's ingress,
between the services that call each other, and from the monitoring namespace to the metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from tests.integration.k8s_render import (
    TARGETS,
    Manifest,
    of_kind,
    pod_labels,
    render,
    selects,
)

MONITORING_LABELS = {"ticketing/scrape-metrics": "true"}


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
