"""The metrics plumbing (issue 22): collectors read at scrape time leave out what they could
not read rather than show a stale value, collectors come and go with a lifespan, and breaker
states and the outbox's age read as documented."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from prometheus_client import Metric, generate_latest
from prometheus_client.core import GaugeMetricFamily
from structlog.testing import capture_logs

from ticketing.shared.http.app_metrics import BreakerCollector, registered, upstream_breakers
from ticketing.shared.http.breaker import CircuitBreaker
from ticketing.shared.http.observability import HttpMetrics
from ticketing.shared.http.upstream import Upstream
from ticketing.shared.messaging.outbox_metrics import age_seconds
from ticketing.shared.metrics import ReadAtScrape


class Reading(ReadAtScrape):
    """Reads ``value``; raises while ``failing``; hangs while ``hanging``."""

    timeout = 0.2

    def __init__(self) -> None:
        super().__init__()
        self.value = 1.0
        self.failing = False
        self.hanging = False

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("reading_value", "A value read at scrape")

    def describe(self) -> Sequence[Metric]:
        return [self._family()]

    async def read(self) -> Sequence[Metric]:
        if self.failing:
            raise ConnectionError("the database went away")
        if self.hanging:
            await asyncio.Event().wait()
        family = self._family()
        family.add_metric([], self.value)
        return [family]


async def scrape(metrics: HttpMetrics) -> str:
    await metrics.refresh()
    return generate_latest(metrics.registry).decode()


async def test_a_read_that_fails_or_hangs_leaves_its_family_out_and_is_logged_once() -> None:
    metrics, reading = HttpMetrics("booking"), Reading()
    with registered(metrics, reading):
        assert "reading_value 1.0" in await scrape(metrics)
        reading.value, reading.failing = 2.0, True
        with capture_logs() as logs:
            for _ in range(3):
                assert "reading_value" not in await scrape(metrics)
        assert [entry["event"] for entry in logs] == ["metrics read failed"]
        reading.failing, reading.hanging = False, True
        started = asyncio.get_running_loop().time()
        assert "reading_value" not in await scrape(metrics)
        assert asyncio.get_running_loop().time() - started < 2
        reading.hanging = False
        with capture_logs() as logs:
            assert "reading_value 2.0" in await scrape(metrics)
        assert [entry["event"] for entry in logs] == ["metrics read again"]


async def test_collectors_come_and_go_with_the_block_and_a_lifespan_may_run_again() -> None:
    metrics = HttpMetrics("booking")
    for _ in range(2):
        reading = Reading()
        with registered(metrics, reading):
            assert metrics.refreshers == [reading.refresh]
            assert "reading_value 1.0" in await scrape(metrics)
        assert metrics.refreshers == []
        assert "reading_value" not in await scrape(metrics)


async def test_a_clash_of_names_unregisters_what_was_registered() -> None:
    metrics = HttpMetrics("booking")
    first, clash = Reading(), Reading()
    with pytest.raises(ValueError, match="Duplicated"), registered(metrics, first, clash):
        pass
    assert metrics.refreshers == []
    with registered(metrics, Reading()):  # the name is free again
        assert "reading_value 1.0" in await scrape(metrics)


async def test_breaker_states_read_0_closed_1_half_open_2_open_per_replica() -> None:
    now = [0.0]
    made: list[CircuitBreaker] = []

    def breaker(name: str) -> CircuitBreaker:
        made.append(CircuitBreaker(name, min_calls=1, open_seconds=5, clock=lambda: now[0]))
        return made[-1]

    inventory = Upstream("inventory", ["http://a:1", "http://b:2"], breakers=breaker)
    try:
        metrics = HttpMetrics("order")
        with registered(metrics, upstream_breakers("order", inventory)):
            text = await scrape(metrics)
            for url in ("http://a:1", "http://b:2"):
                series = f'replica="{url}",service="order",upstream="inventory"'
                assert f"upstream_breaker_state{{{series}}} 0.0" in text
            made[1].record_failure(made[1].admit())
            series = 'replica="http://b:2",service="order",upstream="inventory"'
            assert f"upstream_breaker_state{{{series}}} 2.0" in await scrape(metrics)
            now[0] = 6.0
            assert f"upstream_breaker_state{{{series}}} 1.0" in await scrape(metrics)
        gateway = HttpMetrics("gateway")
        with registered(gateway, BreakerCollector("gateway_breaker_state", {"booking": inventory})):
            text = await scrape(gateway)
        assert 'gateway_breaker_state{replica="http://a:1",upstream="booking"} 0.0' in text
    finally:
        await inventory.aclose()


def test_the_oldest_pending_age_is_zero_when_nothing_waits_or_the_clock_is_behind() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0)
    assert age_seconds(None, now) == 0.0
    assert age_seconds(now - timedelta(seconds=90), now) == 90.0
    assert age_seconds(now + timedelta(seconds=3), now) == 0.0
