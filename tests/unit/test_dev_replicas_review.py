"""Review of ``ticketing dev --replicas N``: the address list it hands to callers."""

from __future__ import annotations

import pytest

from ticketing.cli.devstack import DevStack
from ticketing.shared.settings import Settings


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
