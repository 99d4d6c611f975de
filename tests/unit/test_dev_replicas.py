"""``ticketing dev --replicas N``: each replica's port, ports that would collide refused, and the
address list it hands to callers."""

from __future__ import annotations

import pytest

from ticketing.cli.dev_infra import DevStackError
from ticketing.cli.devstack import REPLICA_PORT_STEP, DevStack, banner, replica_ports
from ticketing.shared.settings import Settings


def test_the_first_replica_keeps_the_services_port_and_the_others_step_up() -> None:
    settings = Settings.from_env({})
    ports = replica_ports(settings, 3, {"kafka": 9092})
    for service, listed in ports.items():
        first = settings.bind(service)[1]
        assert listed == [first + REPLICA_PORT_STEP * k for k in range(3)]
    every = [port for listed in ports.values() for port in listed]
    assert len(every) == len(set(every)) == 12


def test_a_replica_port_taken_by_something_else_is_refused() -> None:
    settings = Settings.from_env({"TICKETING_INVENTORY_PORT": "9000"})
    with pytest.raises(DevStackError, match="inventory replica 2 would listen on port 9100"):
        replica_ports(settings, 2, {"the dev OIDC server": 9100})


def test_two_services_whose_replicas_would_meet_are_refused() -> None:
    settings = Settings.from_env(
        {"TICKETING_INVENTORY_PORT": "8000", "TICKETING_BOOKING_PORT": "8200"}
    )
    replica_ports(settings, 2, {})
    with pytest.raises(DevStackError, match="taken by inventory replica 3"):
        replica_ports(settings, 3, {})


def test_the_banner_lists_every_replicas_port() -> None:
    settings = Settings.from_env({})
    text = banner(settings, "http://idp", replica_ports(settings, 2, {}))
    assert "booking         8082, 8182" in text
    assert "gateway         8090, 8190" in text


def test_replicas_bound_to_an_ipv6_host_are_listed_as_valid_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The list goes to every child as TICKETING_INVENTORY_URL: an address such as
    http://::1:8081 would make each child refuse its settings and die, restarted forever."""
    monkeypatch.delenv("TICKETING_INVENTORY_URL", raising=False)
    monkeypatch.delenv("TICKETING_BOOKING_URL", raising=False)
    settings = Settings.from_env({"TICKETING_INVENTORY_HOST": "::1"})
    stack = DevStack(settings, {}, 9092, 8180, replicas=2)
    stack.plan_replicas()
    assert stack.env["TICKETING_INVENTORY_URL"] == "http://[::1]:8081,http://[::1]:8181"
    assert Settings.from_env(stack.env).base_urls("inventory") == [
        "http://[::1]:8081",
        "http://[::1]:8181",
    ]
