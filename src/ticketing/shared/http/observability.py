"""Per-request correlation id, access log and Prometheus metrics, as one ASGI middleware (the
id itself lives in :mod:`ticketing.shared.correlation`, which messages use too)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram

from ticketing.shared import correlation, tracing
from ticketing.shared.correlation import printable_ascii
from ticketing.shared.ids import new_id

REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_LENGTH = 128
log = structlog.get_logger("ticketing.access")
# Probed every few seconds by orchestrators, ``ticketing dev`` and the gateway: their access
# lines are DEBUG, so that INFO shows requests someone made.
PROBE_ROUTES = frozenset({"/health/live", "/health/ready"})


@dataclass(slots=True)
class HttpMetrics:
    """Metrics of one app, in a registry of its own (tests build many apps in one process)."""

    service: str
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    requests: Counter = field(init=False)
    latency: Histogram = field(init=False)
    # The labelled children by (method, route, status): prometheus_client's labels() takes a
    # lock and validates the labels on every call. Bounded: routes are templates, and the HTTP
    # parser knows a fixed set of methods.
    _children: dict[tuple[str, str, int], tuple[Any, Any]] = field(init=False, default_factory=dict)
    # Read before each scrape: what only an await can read (a database, a Kafka consumer).
    refreshers: list[Callable[[], Awaitable[None]]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests handled",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["service", "method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(self.service, method, route, str(status)),
                self.latency.labels(self.service, method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    async def refresh(self) -> None:
        """Read what the scrape is to show of what only an await can read."""
        if self.refreshers:
            await asyncio.gather(*(refresh() for refresh in self.refreshers))


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1").strip()
            if 0 < len(candidate) <= MAX_REQUEST_ID_LENGTH and printable_ascii(candidate):
                return candidate
            break
    return new_id().hex  # time-ordered, and no getrandom call per request (ids.py)


def observability_middleware(app: ASGIApp, metrics: HttpMetrics) -> ASGIApp:
    """Wrap ``app``: bind ``correlation_id``, echo ``X-Request-ID``, count and time requests."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        correlation_id = _request_id(scope)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((REQUEST_ID_HEADER, correlation_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        bound = correlation.bind(correlation_id)
        try:
            await app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = str(scope.get("path_template") or "unmatched")
            method = str(scope.get("method", ""))
            metrics.record(method, route, status, elapsed)
            tracing.name_server_span(method, route)
            (log.debug if route in PROBE_ROUTES else log.info)(
                "request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            correlation.unbind(bound)

    return middleware
