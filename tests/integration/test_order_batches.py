"""Order's saga consumer on batches of BookingRequested: applied once even when part of a batch
was applied before, and split into reservation calls in order when larger than one call."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from tests.harness.broker import as_the_runner_does
from tests.harness.serving import Stack
from tests.integration.flow import order_service as wired_order_service
from tests.integration.flow import setup_sale
from ticketing.contracts.events import BookingRequested
from ticketing.order import inventory_client as order_inventory_client
from ticketing.order.service import OrderService
from ticketing.order.tables import event_store as order_store
from ticketing.order.tables import orders
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.messaging.consumer import Received


def requested(customer_id: str, event_id: str, count: int = 1) -> BookingRequested:
    return BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=uuid.UUID(customer_id),
        event_id=uuid.UUID(event_id),
        ticket_count=count,
        unit_price="25.00",
        total_price=f"{25 * count}.00",
        requested_at=datetime.now(UTC),
    )


@pytest.fixture
async def order_service(stack: Stack) -> AsyncIterator[OrderService]:
    async with wired_order_service(stack) as (service, _):
        yield service


async def order_rows(stack: Stack, booking_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    async with stack.engines["order"].connect() as conn:
        rows = await conn.execute(
            select(orders.c.booking_id, orders.c.status).where(orders.c.booking_id.in_(booking_ids))
        )
        return {row.booking_id: row.status for row in rows}


async def test_an_order_batch_is_applied_once_even_when_part_of_it_was_applied_before(
    stack: Stack, order_service: OrderService
) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=3)
    events = [requested(customer_id, event_id) for _ in range(5)]
    await order_service.handle_batch([Received(events[0], None), Received(events[1], None)])
    # Redelivered with new messages, twice over, and one booking twice with a new message id.
    twin = dataclasses.replace(events[4], message_id=uuid.uuid4())
    batch = [Received(e, "corr") for e in [*events, *events, twin]]
    with pytest.raises(AlreadyRecorded):  # the runner then hands each message over alone
        await order_service.handle_batch(batch)
    await as_the_runner_does(order_service.handle_batch, batch)
    statuses = await order_rows(stack, [e.booking_id for e in events])
    assert sorted(statuses.values()) == ["CONFIRMED"] * 3 + ["REJECTED"] * 2
    assert [statuses[e.booking_id] for e in events[:3]] == ["CONFIRMED"] * 3
    async with stack.engines["order"].connect() as conn:
        published = await conn.scalar(
            select(func.count())
            .select_from(order_store)
            .where(order_store.c.stream_id.in_([e.booking_id for e in events]))
        )
    assert published == 5
    left = (await stack.inventory.get(f"/api/v1/events/{event_id}")).json()["left_capacity"]
    assert left == 0


async def test_an_order_batch_larger_than_one_reservation_call_is_split_in_order(
    stack: Stack, order_service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(order_inventory_client, "MAX_RESERVATION_BATCH", 2)
    customer_id, event_id = await setup_sale(stack, capacity=3)
    events = [requested(customer_id, event_id) for _ in range(5)]
    await order_service.handle_batch([Received(e, None) for e in events])
    statuses = await order_rows(stack, [e.booking_id for e in events])
    assert [statuses[e.booking_id] for e in events] == ["CONFIRMED"] * 3 + ["REJECTED"] * 2
