"""How ``ticketing serve`` runs a service: its heap settled once started, and forwarded headers
trusted by the gateway alone."""

from __future__ import annotations

import gc

from ticketing.shared.http.serving import GC_THRESHOLDS, settle_heap, takes_proxy_headers


def test_a_started_service_settles_its_heap() -> None:
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_only_the_gateway_reads_forwarded_headers() -> None:
    assert takes_proxy_headers("gateway")
    assert not any(takes_proxy_headers(s) for s in ("inventory", "booking", "order"))
