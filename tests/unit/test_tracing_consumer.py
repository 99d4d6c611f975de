"""A consumer's spans: each record in its producer's trace, a batch's shared work, and
unsampled records passed on without a span."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.fakes.dead_letters import DeadLetters
from tests.unit.deliveries import delivery
from tests.unit.tracing_support import PARENT, UNSAMPLED, finished
from ticketing.contracts.events import OrderRejected
from ticketing.shared import tracing
from ticketing.shared.messaging.consumer import MessageRunner, Received
from ticketing.shared.store.eventstore import Cause

pytestmark = pytest.mark.unit


SAMPLED_A1 = "00-000000000000000000000000000000a1-00000000000000a1-01"
UNSAMPLED_B2 = "00-000000000000000000000000000000b2-00000000000000b2-00"


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


def test_a_batch_whose_first_record_is_unsampled_still_records_the_shared_work_of_a_sampled_one(
    spans: InMemorySpanExporter,
) -> None:
    """With a ratio sampler most records are unsampled: when one of them came first in a batch,
    the batch's shared work (its transaction, its inventory call) ran unrecorded, so a sampled
    booking of that batch lost those hops, and even the link that names them."""
    records = [
        tracing.Consumed("orders", 0, 1, {"traceparent": UNSAMPLED_B2}),
        tracing.Consumed("orders", 0, 2, {"traceparent": SAMPLED_A1}),
    ]
    with tracing.processing(records):
        shared = trace.get_current_span()
        assert shared.is_recording()
        assert f"{shared.get_span_context().trace_id:032x}" == SAMPLED_A1.split("-")[1]
    (batch,) = [s for s in spans.get_finished_spans() if s.name == "orders process batch"]
    assert {f"{link.context.trace_id:032x}" for link in batch.links} == {
        SAMPLED_A1.split("-")[1],
        UNSAMPLED_B2.split("-")[1],
    }


def test_a_batch_of_unsampled_records_records_nothing(spans: InMemorySpanExporter) -> None:
    records = [tracing.Consumed("orders", 0, n, {"traceparent": UNSAMPLED_B2}) for n in (1, 2)]
    with tracing.processing(records) as traces:
        assert not trace.get_current_span().is_recording()
    assert spans.get_finished_spans() == ()
    assert all(tp is not None and tp.endswith(("-00", "-02")) for tp in traces)


W3C_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(["traceparent", "tracestate", "baggage"]),
            st.one_of(
                st.text(max_size=120),
                st.from_regex(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", fullmatch=True),
            ),
        ),
        max_size=3,
    )
)
def test_whatever_trace_headers_a_record_carries_its_batch_runs_and_stores_a_valid_context(
    spans: InMemorySpanExporter, headers: list[tuple[str, str]]
) -> None:
    # Headers come from whoever produced the record: none of them may fail the batch, and what
    # the events it causes store is a W3C traceparent the store can hold, or nothing.
    records = [
        tracing.Consumed("orders", 0, 1, dict(headers)),
        tracing.Consumed("orders", 0, 2, {"traceparent": PARENT}),
    ]
    with tracing.processing(records) as traces:
        pass
    for traceparent in traces:
        assert traceparent is None or W3C_TRACEPARENT.fullmatch(traceparent)
        stored = Cause("consumer").caused_by(None, None, traceparent).traceparent
        assert stored == traceparent


async def test_a_record_handled_alone_records_its_statements_under_its_processing_span(
    spans: InMemorySpanExporter,
) -> None:
    """A batch of one (the usual batch below saturation) runs its record under the record's
    own processing span, so the statements it runs on the driver's cursor are recorded too."""
    record = delivery(0)
    record = dataclasses.replace(record, headers={**record.headers, "traceparent": PARENT})
    stand_in: Any = DeadLetters()
    runner = MessageRunner(stand_in, dlq_topic="t.dlq", accepted=(OrderRejected,), max_backoff=0)

    async def handler(received: Sequence[Received]) -> None:
        with tracing.database_call("UPDATE bookings SET status = 'CONFIRMED'"):
            pass

    await runner.run_batch([record], handler)
    done = finished(spans)
    (process,) = [s for s in done if s.name == "t process"]
    (statement,) = [s for s in done if s.name == "UPDATE"]
    assert statement.parent is not None
    assert statement.parent.span_id == process.context.span_id
