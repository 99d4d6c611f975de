"""Prometheus collectors beyond the HTTP metrics: registered for a service's lifespan, read
asynchronously just before a scrape where only an await can read them, and the state of the
circuit breakers in front of upstreams.

Everything here is read when ``/metrics`` is scraped, never on a request's or a message's path.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import structlog
from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ticketing.shared.breaker import BreakerState
from ticketing.shared.cancellation import stop_if_cancelled
from ticketing.shared.observability import HttpMetrics
from ticketing.shared.upstream import Upstream

log = structlog.get_logger(__name__)
BREAKER_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class ReadAtScrape(Collector, ABC):
    """A collector whose samples are read with an await (:meth:`read`) just before each
    scrape. A read that fails or takes longer than ``timeout`` leaves its families out of that
    scrape: no sample at all says "unknown", where the last value would say something false."""

    timeout = 2.0

    def __init__(self) -> None:
        self._snapshot: Sequence[Metric] = ()
        self._failing = False

    @abstractmethod
    async def read(self) -> Sequence[Metric]:
        """The families as they are now."""

    @abstractmethod
    def describe(self) -> Sequence[Metric]:
        """The families this collector yields, without samples (the registry checks names)."""

    async def refresh(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                families = await self.read()
        except Exception as error:  # noqa: BLE001 - a scrape must answer whatever failed
            stop_if_cancelled(error)
            self._snapshot = ()
            if not self._failing:  # once per failure, not once per scrape
                self._failing = True
                log.warning("metrics read failed", collector=type(self).__name__, error=repr(error))
            return
        if self._failing:
            self._failing = False
            log.info("metrics read again", collector=type(self).__name__)
        self._snapshot = families

    def collect(self) -> Iterator[Metric]:
        yield from self._snapshot


@contextmanager
def registered(metrics: HttpMetrics, *collectors: Collector) -> Iterator[None]:
    """Show ``collectors`` on the app's ``/metrics`` for as long as the block lasts (a lifespan
    that runs again registers them again without a clash of names)."""
    refreshers = [c.refresh for c in collectors if isinstance(c, ReadAtScrape)]
    done: list[Collector] = []
    try:
        for collector in collectors:
            metrics.registry.register(collector)
            done.append(collector)
        metrics.refreshers.extend(refreshers)
        yield
    finally:
        for refresh in refreshers:
            if refresh in metrics.refreshers:
                metrics.refreshers.remove(refresh)
        for collector in done:
            metrics.registry.unregister(collector)


class BreakerCollector(Collector):
    """``name{upstream,replica}`` (and ``labels``): each replica's breaker, 0 closed, 1
    half-open, 2 open, read at scrape."""

    def __init__(
        self,
        name: str,
        upstreams: Mapping[str, Upstream],
        *,
        documentation: str = "Circuit breaker state per upstream replica (0 closed, 1 half-open, "
        "2 open)",
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._upstreams = upstreams
        self._labels = dict(labels or {})

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self._name, self._documentation, labels=[*self._labels, "upstream", "replica"]
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        fixed = list(self._labels.values())
        for name, upstream in self._upstreams.items():
            for replica in upstream.replicas:
                state = BREAKER_STATE_VALUE[replica.breaker.state]
                family.add_metric([*fixed, name, replica.url], state)
        yield family


def upstream_breakers(service: str, *upstreams: Upstream) -> BreakerCollector:
    """``upstream_breaker_state{service,upstream,replica}`` of a service's upstreams."""
    return BreakerCollector(
        "upstream_breaker_state",
        {upstream.name: upstream for upstream in upstreams},
        labels={"service": service},
    )
