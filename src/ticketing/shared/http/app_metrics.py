"""What an app's ``/metrics`` shows beyond its requests: collectors registered for a lifespan,
and the state of the circuit breakers in front of its upstreams, read at scrape.

Everything here is read when ``/metrics`` is scraped, never on a request's or a message's path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ticketing.shared.http.breaker import BreakerState
from ticketing.shared.http.observability import HttpMetrics
from ticketing.shared.http.upstream import Upstream
from ticketing.shared.metrics import ReadAtScrape

BREAKER_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


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


BREAKER_STATE_HELP = "Circuit breaker state per upstream replica (0 closed, 1 half-open, 2 open)"


class BreakerCollector(Collector):
    """``name{upstream,replica}`` (and ``labels``): each replica's breaker, 0 closed, 1
    half-open, 2 open, read at scrape."""

    def __init__(
        self,
        name: str,
        upstreams: Mapping[str, Upstream],
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self._name = name
        self._upstreams = upstreams
        self._labels = dict(labels or {})

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            self._name, BREAKER_STATE_HELP, labels=[*self._labels, "upstream", "replica"]
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
