"""The test harness's free ports: services of one stack must never be given the same port."""

from __future__ import annotations

from tests.harness.processes import free_port


def test_no_port_is_handed_out_twice() -> None:
    # The kernel picks ports for bind(0) from a range of a few tens of thousands, and reuses
    # released ones: two thousand draws would repeat some, as a CI run once did for two
    # services of one stack.
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
