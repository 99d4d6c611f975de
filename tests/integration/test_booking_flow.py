"""The booking saga end to end: booking -> event store -> Kafka -> order -> inventory -> store ->
Kafka -> booking, all real (MariaDB, Tansu, HTTP over loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select, text

from tests.harness.processes import DEV_CLIENTS
from tests.harness.serving import Stack
from tests.integration.flow import book, create_customer, settled, setup_sale
from ticketing.booking.idempotency import client_digest
from ticketing.booking.tables import bookings, idempotency_keys
from ticketing.booking.tables import event_store as booking_store
from ticketing.order.tables import orders

PROBLEM = "application/problem+json"


async def count(stack: Stack, service: str, query: object) -> int:
    async with stack.engines[service].connect() as conn:
        return int(await conn.scalar(query) or 0)  # type: ignore[call-overload]


async def test_a_booking_is_accepted_at_once_and_confirmed(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    response = await book(stack, customer_id, event_id, count=3)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "PENDING"
    assert accepted["total_price"] == "75.00"
    assert accepted["unit_price"] == "25.00"
    assert response.headers["location"] == f"/api/v1/bookings/{accepted['id']}"

    final = await settled(stack, accepted["id"])
    assert final["status"] == "CONFIRMED"
    assert uuid.UUID(final["order_id"])
    assert "reason" not in final
    event = (await stack.inventory.get(f"/api/v1/events/{event_id}")).json()
    assert event["left_capacity"] == 7
    listed = (await stack.booking.get(f"/api/v1/customers/{customer_id}/bookings")).json()
    assert [b["id"] for b in listed["items"]] == [accepted["id"]]
    async with stack.engines["booking"].connect() as conn:
        row = (
            await conn.execute(
                select(booking_store)
                .where(booking_store.c.stream_id == uuid.UUID(accepted["id"]))
                .order_by(booking_store.c.version)
            )
        ).all()
    requested, confirmed = row
    assert (requested.event_type, confirmed.event_type) == ("BookingRequested", "BookingConfirmed")
    assert requested.topic == "ticketing.bookings"
    assert requested.message_key == event_id
    assert requested.published_at is not None
    assert confirmed.topic is None  # internal: never published


async def test_a_small_flash_sale_never_oversells(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=5)
    responses = await asyncio.gather(*(book(stack, customer_id, event_id) for _ in range(30)))
    accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    refused_early = [r for r in responses if r.status_code != 202]
    assert all(r.status_code == 409 for r in refused_early)
    finals = await asyncio.gather(*(settled(stack, booking_id) for booking_id in accepted))
    statuses = Counter(f["status"] for f in finals)
    assert statuses["CONFIRMED"] == 5
    assert statuses["REJECTED"] == len(accepted) - 5
    assert {f.get("reason") for f in finals if f["status"] == "REJECTED"} <= {
        "insufficient_capacity"
    }
    event = (await stack.inventory.get(f"/api/v1/events/{event_id}")).json()
    assert event["left_capacity"] == 0
    order_count = await count(
        stack,
        "order",
        select(func.count())
        .select_from(orders)
        .where(orders.c.event_id == uuid.UUID(event_id), orders.c.status == "CONFIRMED"),
    )
    assert order_count == 5


async def test_refusals_at_the_door_write_nothing(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=3)
    outbox_rows = select(func.count()).select_from(booking_store)
    booking_rows = select(func.count()).select_from(bookings)
    before = (
        await count(stack, "booking", outbox_rows),
        await count(stack, "booking", booking_rows),
    )

    cases = [
        (str(uuid.uuid4()), event_id, 1, 404, "customer"),
        (customer_id, str(uuid.uuid4()), 1, 404, "event"),
        (customer_id, event_id, 11, 400, "ticket_count"),
        (customer_id, event_id, 4, 409, "left"),
        (customer_id, event_id, 0, 400, "ticket_count"),
        ("nope", event_id, 1, 400, "customer_id"),
    ]
    for customer, event, tickets, status, word in cases:
        response = await book(stack, customer, event, tickets)
        assert response.status_code == status, (customer, event, tickets, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert word in response.json()["detail"]

    after = (
        await count(stack, "booking", outbox_rows),
        await count(stack, "booking", booking_rows),
    )
    assert after == before


async def test_idempotency_key_returns_the_first_answer(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    key = f"key-{uuid.uuid4()}"
    first = await book(stack, customer_id, event_id, 2, **{"Idempotency-Key": key})
    assert first.status_code == 202
    again = await asyncio.gather(
        *(book(stack, customer_id, event_id, 2, **{"Idempotency-Key": key}) for _ in range(5))
    )
    for response in again:
        assert response.status_code == 202
        assert response.content == first.content
        assert response.headers["idempotent-replayed"] == "true"
    other_body = await book(stack, customer_id, event_id, 3, **{"Idempotency-Key": key})
    assert other_body.status_code == 422
    assert other_body.headers["content-type"] == PROBLEM
    booked = (
        select(func.count()).select_from(bookings).where(bookings.c.event_id == uuid.UUID(event_id))
    )
    assert await count(stack, "booking", booked) == 1
    assert (await settled(stack, first.json()["id"]))["status"] == "CONFIRMED"


async def test_a_key_still_in_flight_is_409_with_retry_after(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    key = f"key-{uuid.uuid4()}"
    body = json.dumps(
        {"customer_id": customer_id, "event_id": event_id, "ticket_count": 1},
        separators=(",", ":"),
    ).encode()
    async with stack.engines["booking"].begin() as conn:
        await conn.execute(
            idempotency_keys.insert().values(
                client=client_digest(DEV_CLIENTS["admin"][0]),  # stack.booking's token's client
                idem_key=key,
                claim=uuid.uuid4().hex,
                fingerprint=hashlib.sha256(body).hexdigest(),
                created_at=func.utc_timestamp(6),
            )
        )
    response = await stack.booking.post(
        "/api/v1/bookings",
        content=body,
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert response.status_code == 409
    assert response.headers["retry-after"] == "1"


async def test_a_failed_request_releases_its_key(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=1)
    key = f"key-{uuid.uuid4()}"
    too_many = await book(stack, customer_id, event_id, 2, **{"Idempotency-Key": key})
    assert too_many.status_code == 409
    async with stack.engines["booking"].connect() as conn:
        kept = await conn.scalar(
            text("SELECT COUNT(*) FROM idempotency_keys WHERE idem_key = :k"), {"k": key}
        )
    assert kept == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "A", "email": "not-an-email"}, "email"),
        ({"name": "", "email": "a@b.co"}, "name"),
        ({"email": "a@b.co"}, "name"),
    ],
)
async def test_bad_customers_are_400(stack: Stack, body: dict[str, str], field: str) -> None:
    response = await stack.booking.post("/api/v1/customers", json=body)
    assert response.status_code == 400
    assert field in response.json()["detail"]


async def test_customer_email_is_unique_and_unknown_ids_are_404(stack: Stack) -> None:
    customer = await create_customer(stack.booking)
    again = await stack.booking.post(
        "/api/v1/customers", json={"name": "Other", "email": customer["email"]}
    )
    assert again.status_code == 409
    assert (await stack.booking.get(f"/api/v1/customers/{customer['id']}")).json() == customer
    for path in (
        f"/api/v1/customers/{uuid.uuid4()}",
        f"/api/v1/customers/{uuid.uuid4()}/bookings",
        f"/api/v1/bookings/{uuid.uuid4()}",
    ):
        response = await stack.booking.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == PROBLEM


async def test_services_report_ready_with_database_kafka_consumers_and_relay(
    stack: Stack,
) -> None:
    import httpx

    for url in (str(stack.booking.base_url), stack.order_url):
        async with httpx.AsyncClient(base_url=url) as client:
            ready = await client.get("/health/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {
                "database": "ok",
                "relay": "ok",
                "kafka": "ok",
                "consumers": "ok",
            }
