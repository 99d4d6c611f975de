"""Review of tracing (issue 22): sampling decisions across a consumer's batch, on the SDK's
in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ticketing.shared import tracing

SAMPLED = "00-000000000000000000000000000000a1-00000000000000a1-01"
UNSAMPLED = "00-000000000000000000000000000000b2-00000000000000b2-00"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure("review", {}, exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def test_a_batch_whose_first_record_is_unsampled_still_records_the_shared_work_of_a_sampled_one(
    spans: InMemorySpanExporter,
) -> None:
    """With a ratio sampler most records are unsampled: when one of them came first in a batch,
    the batch's shared work (its transaction, its inventory call) ran unrecorded, so a sampled
    booking of that batch lost those hops, and even the link that names them."""
    records = [
        tracing.Consumed("orders", 0, 1, {"traceparent": UNSAMPLED}),
        tracing.Consumed("orders", 0, 2, {"traceparent": SAMPLED}),
    ]
    with tracing.processing(records):
        shared = trace.get_current_span()
        assert shared.is_recording()
        assert f"{shared.get_span_context().trace_id:032x}" == SAMPLED.split("-")[1]
    (batch,) = [s for s in spans.get_finished_spans() if s.name == "orders process batch"]
    assert {f"{link.context.trace_id:032x}" for link in batch.links} == {
        SAMPLED.split("-")[1],
        UNSAMPLED.split("-")[1],
    }


def test_a_batch_of_unsampled_records_records_nothing(spans: InMemorySpanExporter) -> None:
    records = [tracing.Consumed("orders", 0, n, {"traceparent": UNSAMPLED}) for n in (1, 2)]
    with tracing.processing(records) as traces:
        assert not trace.get_current_span().is_recording()
    assert spans.get_finished_spans() == ()
    assert all(tp is not None and tp.endswith(("-00", "-02")) for tp in traces)


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
