"""Server spans: the gateway starts every trace, a caller's unsampled request costs no span,
and what a span records of the caller is deleted by the collector."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit.tracing_support import PARENT, UNSAMPLED, App, finished, receive, request, send
from ticketing.shared import tracing

pytestmark = pytest.mark.unit

COLLECTOR = Path(__file__).parents[2] / "deploy" / "otel-collector" / "config.yaml"
CLIENT_TRACE = [(b"traceparent", PARENT.encode()), (b"tracestate", b"a=b"), (b"baggage", b"u=x")]


async def test_the_gateway_drops_a_clients_trace_headers(spans: InMemorySpanExporter) -> None:
    app = App()
    scope = request("/api/v1/bookings/1", [*CLIENT_TRACE, (b"accept", b"*/*")])
    for trusts_callers in (False, True):
        await tracing.instrument_asgi(app, trusts_callers=trusts_callers)(scope, receive, send)
    untrusted, trusted = app.headers
    assert untrusted == [(b"accept", b"*/*")]
    assert len(trusted) == 4
    trace_id = PARENT.split("-")[1]
    assert app.traceparents[0] is not None
    assert trace_id not in app.traceparents[0]
    assert app.traceparents[1] is not None
    assert trace_id in app.traceparents[1]
    servers = [s for s in finished(spans) if s.kind is trace.SpanKind.SERVER]
    assert len(servers) == 2
    assert servers[0].parent is None


async def test_a_service_runs_a_callers_unsampled_request_in_its_context_without_a_span(
    spans: InMemorySpanExporter,
) -> None:
    app = App()
    traced = tracing.instrument_asgi(app)
    for traceparent in (UNSAMPLED, PARENT):
        scope = request("/internal/v1/events/1", [(b"traceparent", traceparent.encode())])
        await traced(scope, receive, send)
    unsampled, sampled = app.traceparents
    assert unsampled == UNSAMPLED
    (server,) = finished(spans)
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == PARENT.split("-")[2]
    assert sampled is not None
    assert sampled.split("-")[2] == f"{server.context.span_id:016x}"


def collector_deletes() -> set[str]:
    config = yaml.safe_load(COLLECTOR.read_text())
    return {a["key"] for a in config["processors"]["attributes/personal-data"]["actions"]}


async def test_what_a_span_records_of_the_caller_is_deleted_by_the_collector(
    spans: InMemorySpanExporter,
) -> None:
    # The HTTP instrumentation records the caller's address and user agent (personal data at
    # the public gateway); the compose collector must delete every attribute that holds them.
    deleted = collector_deletes()
    headers = [(b"user-agent", b"Personal/1.0"), (b"x-forwarded-for", b"203.0.113.9")]
    scope = request("/api/v1/events", headers, client=("203.0.113.9", 50123))
    await tracing.instrument_asgi(App(), trusts_callers=False)(scope, receive, send)
    (server,) = finished(spans)
    assert server.attributes is not None
    personal = {
        key
        for key, value in server.attributes.items()
        if isinstance(value, str) and ("203.0.113.9" in value or "Personal/1.0" in value)
    }
    assert personal  # the instrumentation does record them
    assert personal <= deleted, personal - deleted
