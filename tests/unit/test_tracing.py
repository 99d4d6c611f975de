"""Tracing's own logic: when it is on, what it refuses, and the spans no instrumentation makes
(a consumer batch's, the trace resumed from a stored event), on the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ticketing.shared import tracing
from ticketing.shared.eventstore import Cause

pytestmark = pytest.mark.unit

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure("test", {}, exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()
    assert not tracing.enabled()


def finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        (ENDPOINT, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "TRUE "}, False),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "false"}, True),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
    ],
)
def test_tracing_is_on_only_with_an_endpoint_and_not_disabled(
    environ: dict[str, str], on: bool
) -> None:
    assert tracing.wanted(environ) is on


def test_off_installs_nothing_and_every_helper_is_a_no_op() -> None:
    assert not tracing.configure("test", {})
    assert not tracing.enabled()
    assert tracing.current_traceparent() is None
    with tracing.resumed(PARENT), tracing.database_call("SELECT 1"):
        pass
    records = [tracing.Consumed("t", 0, 1, {"traceparent": PARENT})]
    with tracing.processing(records) as traces:
        assert traces == [None]
    app: Any = object()
    assert tracing.instrument_asgi(app) is app
    assert tracing.add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_TRACES_EXPORTER", "console"),
    ],
)
def test_what_this_build_cannot_export_is_refused_at_start(name: str, value: str) -> None:
    with pytest.raises(tracing.TracingConfigError, match=name):
        tracing.configure("test", {**ENDPOINT, name: value})
    assert not tracing.enabled()


def test_the_traces_protocol_wins_over_the_general_one() -> None:
    tracing.check(
        {
            **ENDPOINT,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
    )


def test_a_consumed_record_is_processed_in_its_producers_trace(
    spans: InMemorySpanExporter,
) -> None:
    records = [tracing.Consumed("bookings", 2, 7, {"traceparent": PARENT})]
    with tracing.processing(records) as traces:
        inner = trace.get_current_span().get_span_context()
    (span,) = finished(spans)
    assert span.name == "bookings process"
    assert span.kind is trace.SpanKind.CONSUMER
    assert f"{span.context.trace_id:032x}" == PARENT.split("-")[1]
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == PARENT.split("-")[2]
    assert inner.span_id == span.context.span_id  # the batch's work runs under it
    assert traces == [f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"]


def test_a_batch_keeps_every_record_in_its_own_trace_and_links_them(
    spans: InMemorySpanExporter,
) -> None:
    parents = [f"00-{n:032x}-{n:016x}-01" for n in (1, 2, 3)]
    records = [tracing.Consumed("orders", 0, n, {"traceparent": p}) for n, p in enumerate(parents)]
    with tracing.processing(records) as traces:
        shared = trace.get_current_span().get_span_context()
    done = finished(spans)
    per_record = [s for s in done if s.name == "orders process"]
    (batch,) = [s for s in done if s.name == "orders process batch"]
    assert [s.context.trace_id for s in per_record] == [1, 2, 3]
    assert [s.parent.span_id for s in per_record if s.parent] == [1, 2, 3]
    assert batch.context.span_id == shared.span_id
    assert batch.parent is not None
    assert batch.parent.span_id == per_record[0].context.span_id
    assert {link.context.span_id for link in batch.links} == {s.context.span_id for s in per_record}
    assert [tp.split("-")[1] if tp else None for tp in traces] == [f"{n:032x}" for n in (1, 2, 3)]


def test_a_record_without_trace_headers_starts_no_trace(spans: InMemorySpanExporter) -> None:
    # Only a request served or an event sent may start a trace: a consumer span without a
    # parent is not recorded, and what it causes is stored unsampled.
    with tracing.processing([tracing.Consumed("bookings", 0, 1, {})]) as traces:
        pass
    assert finished(spans) == []
    assert traces[0] is not None
    assert int(traces[0].rsplit("-", 1)[1], 16) & 1 == 0  # not sampled


def test_work_outside_a_trace_records_nothing_but_an_event_sent_may_start_one(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.database_call("SELECT * FROM event_store WHERE published_at IS NULL"):
        pass
    assert finished(spans) == []
    tracer = trace.get_tracer("test", tracer_provider=tracing._state.provider)  # type: ignore[union-attr]
    with (
        tracer.start_as_current_span("bookings send", kind=trace.SpanKind.PRODUCER),
        tracing.database_call("UPDATE event_store SET published_at = %s"),
    ):
        pass
    names = sorted(s.name for s in finished(spans))
    assert names == ["UPDATE", "bookings send"]
    (statement,) = [s for s in finished(spans) if s.name == "UPDATE"]
    assert statement.attributes is not None
    assert statement.attributes["db.query.text"] == "UPDATE event_store SET published_at = %s"


def test_a_stored_trace_is_resumed_and_recorded_again(spans: InMemorySpanExporter) -> None:
    with tracing.resumed(PARENT):
        assert tracing.current_traceparent() == PARENT
        cause = Cause("test", traceparent=tracing.current_traceparent())
    assert tracing.current_traceparent() is None
    assert cause.traceparent == PARENT


def test_a_cause_keeps_only_a_traceparent_it_can_store_whole() -> None:
    cause = Cause("consumer", traceparent=PARENT)
    assert cause.caused_by(None, None, "00-" + "a" * 80).traceparent == PARENT
    assert cause.caused_by(None, None, "00-\u00e9").traceparent == PARENT
    other = "00-" + "1" * 32 + "-" + "2" * 16 + "-00"
    assert cause.caused_by(None, None, other).traceparent == other
    assert Cause("x").caused_by("m", "c").traceparent is None


def test_log_lines_inside_a_trace_carry_its_ids(spans: InMemorySpanExporter) -> None:
    with tracing.resumed(PARENT):
        line = tracing.add_trace_ids(None, "info", {"event": "x", "correlation_id": "c"})
    assert line["trace_id"] == PARENT.split("-")[1]
    assert line["span_id"] == PARENT.split("-")[2]
    assert "trace_id" not in tracing.add_trace_ids(None, "info", {"event": "y"})
    with tracing.resumed(PARENT[:-2] + "00"):  # a trace no viewer will hold
        assert "trace_id" not in tracing.add_trace_ids(None, "info", {"event": "z"})


async def test_the_gateway_drops_a_clients_trace_headers(spans: InMemorySpanExporter) -> None:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(list(scope["headers"]))
        seen.append([(b"inner", tracing.current_traceparent().encode())])  # type: ignore[union-attr]
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    scope: Any = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/bookings/1",
        "headers": [
            (b"traceparent", PARENT.encode()),
            (b"tracestate", b"a=b"),
            (b"baggage", b"user=x"),
            (b"accept", b"*/*"),
        ],
        "query_string": b"",
        "server": ("127.0.0.1", 8090),
        "scheme": "http",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    for trusts_callers in (False, True):
        traced = tracing.instrument_asgi(app, trusts_callers=trusts_callers)
        await traced(scope, receive, send)
    untrusted_headers, untrusted_inner, trusted_headers, trusted_inner = seen
    assert untrusted_headers == [(b"accept", b"*/*")]
    assert PARENT.split("-")[1] not in untrusted_inner[0][1].decode()
    assert len(trusted_headers) == 4
    assert PARENT.split("-")[1] in trusted_inner[0][1].decode()
    servers = [s for s in finished(spans) if s.kind is trace.SpanKind.SERVER]
    assert len(servers) == 2
    assert servers[0].parent is None


def test_the_service_name_defaults_to_the_service_and_yields_to_otel_service_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for environ, expected in (({}, "ticketing-booking"), ({"OTEL_SERVICE_NAME": "mine"}, "mine")):
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        assert tracing.configure("booking", {}, exporter=InMemorySpanExporter())
        try:
            resource = tracing._state.provider.resource  # type: ignore[union-attr]
            assert resource.attributes["service.name"] == expected
        finally:
            tracing.shutdown()


UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def test_an_unsampled_record_records_nothing_and_passes_its_decision_on(
    spans: InMemorySpanExporter,
) -> None:
    records = [
        tracing.Consumed("bookings", 0, 1, {"traceparent": UNSAMPLED}),
        tracing.Consumed("bookings", 0, 2, {"traceparent": PARENT.replace("0af7", "1af7")}),
    ]
    with tracing.processing(records) as traces:
        shared = trace.get_current_span()
        with tracing.database_call("SELECT 1"):
            pass
    assert traces[0] == UNSAMPLED  # later hops inherit "not sampled"
    done = finished(spans)
    assert sorted(s.name for s in done) == ["SELECT", "bookings process", "bookings process batch"]
    (batch,) = [s for s in done if s.name.endswith("batch")]
    (sampled,) = [s for s in done if s.name == "bookings process"]
    assert batch.parent is not None
    assert batch.parent.span_id == sampled.context.span_id  # the first sampled record
    assert shared.get_span_context().span_id == batch.context.span_id
    spans.clear()
    with tracing.processing(records[:1]) as traces, tracing.database_call("SELECT 1"):
        assert tracing.current_traceparent() == UNSAMPLED
    assert finished(spans) == []


async def test_a_service_runs_a_callers_unsampled_request_in_its_context_without_a_span(
    spans: InMemorySpanExporter,
) -> None:
    inner: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        inner.append(tracing.current_traceparent())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    traced = tracing.instrument_asgi(app)
    for traceparent in (UNSAMPLED, PARENT):
        scope: Any = {
            "type": "http",
            "method": "GET",
            "path": "/internal/v1/events/1",
            "headers": [(b"traceparent", traceparent.encode())],
            "query_string": b"",
            "server": ("127.0.0.1", 8081),
            "scheme": "http",
            "http_version": "1.1",
            "asgi": {"version": "3.0"},
        }
        await traced(scope, receive, send)
    assert inner[0] == UNSAMPLED
    (server,) = finished(spans)
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == PARENT.split("-")[2]
    assert inner[1] is not None
    assert inner[1].split("-")[2] == f"{server.context.span_id:016x}"


COLLECTOR = Path(__file__).parents[2] / "deploy" / "otel-collector" / "config.yaml"


def collector_deletes() -> set[str]:
    config = yaml.safe_load(COLLECTOR.read_text())
    return {a["key"] for a in config["processors"]["attributes/personal-data"]["actions"]}


async def test_what_a_span_records_of_the_caller_is_deleted_by_the_collector(
    spans: InMemorySpanExporter,
) -> None:
    # The HTTP instrumentation records the caller's address and user agent (personal data at
    # the public gateway); the compose collector must delete every attribute that holds them.
    deleted = collector_deletes()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    scope: Any = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/events",
        "headers": [(b"user-agent", b"Personal/1.0"), (b"x-forwarded-for", b"203.0.113.9")],
        "query_string": b"",
        "client": ("203.0.113.9", 50123),
        "server": ("127.0.0.1", 8090),
        "scheme": "http",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    await tracing.instrument_asgi(app, trusts_callers=False)(scope, receive, send)
    (server,) = finished(spans)
    assert server.attributes is not None
    personal = {
        key
        for key, value in server.attributes.items()
        if isinstance(value, str) and ("203.0.113.9" in value or "Personal/1.0" in value)
    }
    assert personal  # the instrumentation does record them
    assert personal <= deleted, personal - deleted
