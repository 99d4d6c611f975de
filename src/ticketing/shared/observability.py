"""Per-request correlation id, access log and Prometheus metrics, as one ASGI middleware."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram

REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_LENGTH = 128
log = structlog.get_logger("ticketing.access")


@dataclass(slots=True)
class HttpMetrics:
    """Metrics of one app, in a registry of its own (tests build many apps in one process)."""

    service: str
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    requests: Counter = field(init=False)
    latency: Histogram = field(init=False)

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


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1").strip()
            if 0 < len(candidate) <= MAX_REQUEST_ID_LENGTH and candidate.isprintable():
                return candidate
            break
    return uuid.uuid4().hex


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

        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            try:
                await app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = str(scope.get("path_template") or "unmatched")
                method = str(scope.get("method", ""))
                metrics.requests.labels(metrics.service, method, route, str(status)).inc()
                metrics.latency.labels(metrics.service, method, route).observe(elapsed)
                log.info(
                    "request",
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )

    return middleware


def current_correlation_id() -> str | None:
    """The correlation id bound for the request or message being handled, if any."""
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return None if value is None else str(value)
