"""One booking is one trace: ``ticketing dev`` with the standard OTEL_* variables pointed at a
local OTLP receiver, a booking through the gateway, and the spans the four services export."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import text

from tests.e2e.devprocess import DevProcess, dev_process
from tests.integration.flow import create_customer
from tests.integration.helpers import create_event
from tests.otlp import ReceivedSpan, Receiver, otlp_receiver
from ticketing.contracts.events import BOOKINGS_TOPIC, ORDERS_TOPIC
from ticketing.shared.settings import Settings

SERVICES = {"ticketing-gateway", "ticketing-booking", "ticketing-order", "ticketing-inventory"}
CLIENT_TRACE = "00-11111111111111111111111111111111-2222222222222222-01"
TRACED = {
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second, not five
}


async def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.1)


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, (service, name, sorted((s.service, s.name) for s in spans))
    return found[0]


def descends(span: ReceivedSpan, ancestor: ReceivedSpan, spans: list[ReceivedSpan]) -> bool:
    by_id = {s.span_id: s for s in spans}
    current: ReceivedSpan | None = span
    while current is not None:
        if current.parent_span_id == ancestor.span_id:
            return True
        current = by_id.get(current.parent_span_id)
    return False


async def book(dev: DevProcess) -> tuple[httpx.AsyncClient, str]:
    """A venue, an event, a customer and one CONFIRMED booking; the client and booking id."""
    api = httpx.AsyncClient(
        base_url=dev.gateway, headers={"Authorization": f"Bearer {await dev.token()}"}, timeout=30
    )
    event = await create_event(api, capacity=10, price="5.00")
    customer = await create_customer(api)
    accepted = await api.post(
        "/api/v1/bookings",
        json={
            "customer_id": customer["id"],
            "event_id": event["id"],
            "ticket_count": 1,
        },
        # A client's trace headers are dropped: every trace starts at the gateway.
        headers={"traceparent": CLIENT_TRACE, "baggage": "tenant=other"},
    )
    assert accepted.status_code == 202, accepted.text
    booking_id = str(accepted.json()["id"])
    for _ in range(600):
        status = (await api.get(f"/api/v1/bookings/{booking_id}")).json()["status"]
        if status != "PENDING":
            break
        await asyncio.sleep(0.05)
    assert status == "CONFIRMED"
    return api, booking_id


def the_booking_trace(receiver: Receiver) -> str:
    (request,) = [
        s
        for s in receiver.spans
        if s.service == "ticketing-booking" and s.name == "POST /api/v1/bookings"
    ]
    return request.trace_id


async def stored_traces(dev: DevProcess, trace_id: str) -> dict[str, int]:
    counts = {}
    for service, engine in dev.engines.items():
        async with engine.connect() as conn:
            counts[service] = int(
                await conn.scalar(
                    text("SELECT COUNT(*) FROM event_store WHERE traceparent LIKE :t"),
                    {"t": f"00-{trace_id}-%"},
                )
                or 0
            )
    return counts


async def test_one_booking_is_one_trace_across_the_four_services_and_both_topics(
    base_settings: Settings, tmp_path: Path
) -> None:
    async with otlp_receiver() as receiver:
        env = {**TRACED, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        async with dev_process(base_settings, tmp_path, env=env) as dev:
            api, booking_id = await book(dev)
            settled = f"{ORDERS_TOPIC} process"
            await until(
                lambda: any(
                    s.service == "ticketing-booking" and s.name == "POST /api/v1/bookings"
                    for s in receiver.spans
                )
            )
            trace_id = the_booking_trace(receiver)
            await until(
                lambda: any(
                    s.service == "ticketing-booking" and s.name == settled
                    for s in receiver.trace(trace_id)
                )
            )
            await asyncio.sleep(0.5)  # the last exports of the spans around it
            spans = receiver.trace(trace_id)

            # All four services, one tree under the gateway's span of the client's request.
            assert {s.service for s in spans} == SERVICES
            roots = [s for s in spans if not s.parent_span_id]
            assert [(r.service, r.kind) for r in roots] == [("ticketing-gateway", 2)]
            ids = {s.span_id for s in spans}
            assert all(s.parent_span_id in ids for s in spans if s.parent_span_id)
            assert trace_id != CLIENT_TRACE.split("-")[1]

            # The hops in the order a booking makes them, each under the one before.
            gateway = roots[0]
            accepted = one(spans, "ticketing-booking", "POST /api/v1/bookings")
            sent = one(spans, "ticketing-booking", f"{BOOKINGS_TOPIC} send")
            requested = one(spans, "ticketing-order", f"{BOOKINGS_TOPIC} process")
            reserved = one(spans, "ticketing-inventory", "POST /internal/v1/reservations")
            answered = one(spans, "ticketing-order", f"{ORDERS_TOPIC} send")
            settlement = one(spans, "ticketing-booking", settled)
            chain = [gateway, accepted, sent, requested, reserved]
            for child, parent in zip(chain[1:], chain, strict=False):
                assert descends(child, parent, spans), (child.name, parent.name)
            assert descends(answered, requested, spans)
            assert descends(settlement, answered, spans)
            kinds = {s.kind for s in spans}
            assert {2, 3, 4, 5} <= kinds  # server, client (HTTP and SQL), producer, consumer
            assert any(s.attributes.get("db.system.name") == "mysql" for s in spans)

            # Each service stored the trace with the events the booking recorded.
            stored = await stored_traces(dev, trace_id)
            assert stored["booking"] >= 2  # requested, then confirmed
            assert stored["order"] >= 1
            assert stored["inventory"] >= 1

            # A log line of the request leads to its trace.
            lines = [
                json.loads(line)
                for line in dev.log_path.read_text().splitlines()
                if line.startswith("{") and trace_id in line
            ]
            assert any("correlation_id" in line and "span_id" in line for line in lines)

            # A replayed event is sent again in the trace it was recorded in.
            replayed = await dev.run_cli(
                "outbox",
                "replay",
                "--service",
                "booking",
                "--aggregate-id",
                booking_id,
                "--event-type",
                "BookingRequested",
            )
            assert "replayed 1 event(s)" in replayed
            await until(
                lambda: any(
                    s.service == "ticketing-booking-replay" for s in receiver.trace(trace_id)
                )
            )
            (again,) = [s for s in receiver.trace(trace_id) if s.service.endswith("-replay")]
            assert again.name == f"{BOOKINGS_TOPIC} send"
            assert again.parent_span_id in {s.span_id for s in spans}
            await api.aclose()


async def test_without_otel_variables_nothing_is_traced_or_stored(
    base_settings: Settings, tmp_path: Path
) -> None:
    async with dev_process(base_settings, tmp_path, env=TRACED) as dev:
        api, _ = await book(dev)
        await api.aclose()
        for engine in dev.engines.values():
            async with engine.connect() as conn:
                traced = await conn.scalar(
                    text("SELECT COUNT(*) FROM event_store WHERE traceparent IS NOT NULL")
                )
            assert traced == 0
        log = dev.log_path.read_text()
        assert '"correlation_id"' in log
        assert '"trace_id"' not in log
