"""A request's correlation id: taken from ``X-Request-ID`` or made up, seen in its logs, echoed
back, and gone once the request ends."""

from __future__ import annotations

from typing import Any

from ticketing.shared.correlation import (
    add_correlation_id,
    correlation_id_bound,
    current_correlation_id,
)
from ticketing.shared.http.observability import HttpMetrics, observability_middleware


async def test_a_request_s_correlation_id_is_seen_inside_it_and_gone_after() -> None:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_correlation_id())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    metrics = HttpMetrics("test")
    middleware = observability_middleware(app, metrics)
    first: Any = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-request-id", b"r-1")],
    }
    second: Any = {**first, "headers": []}
    await middleware(first, receive, send)
    await middleware(second, receive, send)
    assert seen[0] == "r-1"
    assert seen[1] not in (None, "r-1")  # a fresh id for a request that brings none
    assert (b"x-request-id", b"r-1") in sent[0]["headers"]
    assert current_correlation_id() is None
    labels = {"service": "test", "method": "GET", "route": "unmatched", "status": "204"}
    assert metrics.registry.get_sample_value("http_requests_total", labels) == 2
    with correlation_id_bound("m-1"):
        assert add_correlation_id(None, "info", {"event": "x"})["correlation_id"] == "m-1"
    assert "correlation_id" not in add_correlation_id(None, "info", {"event": "x"})
