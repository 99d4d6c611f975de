"""The trace a stored event resumes, what a cause keeps of it, and the spans and log ids of
work inside and outside a trace."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.unit.tracing_support import PARENT, finished
from ticketing.shared import tracing
from ticketing.shared.store.eventstore import Cause

pytestmark = pytest.mark.unit


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
