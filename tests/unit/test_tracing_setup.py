"""When tracing is on, what it refuses at start, and what it names itself."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit.tracing_support import ENDPOINT, PARENT
from ticketing.shared import tracing

pytestmark = pytest.mark.unit


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


@pytest.mark.parametrize("propagators", ["b3", "none", "jaeger,tracecontext"])
def test_a_propagator_this_build_lacks_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, propagators: str
) -> None:
    """``ticketing serve --help`` says the standard OTEL_* variables apply. With b3 (not
    installed) the SDK raised a bare ValueError out of ``serve``; with none the HTTP hops
    stopped carrying the trace while Kafka's still did. Either is refused as a config error."""
    monkeypatch.setenv("OTEL_PROPAGATORS", propagators)
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_PROPAGATORS": propagators}
    try:
        with pytest.raises(tracing.TracingConfigError, match="OTEL_PROPAGATORS"):
            tracing.configure("review", environ)
    finally:
        tracing.shutdown()
    assert not tracing.enabled()


def test_the_standard_propagators_are_taken() -> None:
    for propagators in ("tracecontext,baggage", "tracecontext", " tracecontext , baggage ", ""):
        tracing.check({"OTEL_PROPAGATORS": propagators})


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
