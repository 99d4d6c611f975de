"""Order records a confirmed order's release as version 2 of its booking's stream, which its
relay publishes, with the ``orders`` row and the inbox claim in the same transaction; twice,
or concurrently, it is recorded once (on MariaDB; the rules themselves run fast on fakes in
tests/unit/test_order_release_use_case.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.broker import as_the_runner_does
from tests.harness.databases import order_records as records
from tests.integration.order_db import (
    Inventory,
    count,
    engine,
    order_db,
    order_rows,
    requested,
    stored,
)
from tests.integration.order_relay import relay_once
from tests.unit.order_saga import cancelled, expired
from ticketing.contracts.events import (
    ORDERS_TOPIC,
    BookingRequested,
    OrderConfirmed,
    OrderReleased,
)
from ticketing.contracts.inventory import ReservationOutcome
from ticketing.order import projections, repository
from ticketing.order.domain import ImpossibleRelease, OrderStatus
from ticketing.order.repository import STORE
from ticketing.order.service import CONSUMER, OrderService
from ticketing.order.tables import event_store, inbox
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.errors import ImpossibleHistory
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause

__all__ = ["engine", "order_db"]  # fixtures: an order database of the test's own


async def confirmed(service: OrderService, count: int = 1) -> list[BookingRequested]:
    messages = [requested(ticket_count=n % 3 + 1) for n in range(count)]
    await service.handle_batch([Received(m, None) for m in messages])
    return messages


async def test_a_release_is_version_2_of_the_stream_for_the_relay_with_its_row_and_claim(
    engine: AsyncEngine,
) -> None:
    wakes: list[None] = []
    inventory = Inventory()
    service = OrderService(records(engine), inventory, after_commit=lambda: wakes.append(None))
    (booked,) = await confirmed(service)
    before = (await order_rows(engine))[booked.booking_id]
    message = expired(booked)
    await service.handle_batch([Received(message, "corr-expiry")])
    first, second = await stored(engine, [booked.booking_id])
    async with engine.connect() as conn:
        history = await STORE.stream(conn, booked.booking_id)
    outcome, release = (recorded.event for recorded in history)
    assert isinstance(outcome, OrderConfirmed)
    assert release == OrderReleased(
        message_id=second["event_id"],
        order_id=outcome.order_id,
        booking_id=booked.booking_id,
        event_id=booked.event_id,
        ticket_count=booked.ticket_count,
        reason="expired",
        released_at=history[1].recorded_at,
    )
    assert (second["stream_type"], second["version"], second["event_type"]) == (
        "order",
        2,
        "OrderReleased",
    )
    assert (second["actor"], second["correlation_id"], second["causation_id"]) == (
        CONSUMER,
        "corr-expiry",
        str(message.message_id),
    )
    assert (second["topic"], second["message_key"], second["published_at"]) == (
        ORDERS_TOPIC,
        str(booked.booking_id),
        None,
    )
    row = (await order_rows(engine))[booked.booking_id]
    assert row == {**before, "status": "RELEASED", "reason": "expired"}
    assert row["created_at"] == first["recorded_at"]  # when its outcome was recorded
    assert await count(engine, inbox) == 2
    assert wakes == [None, None]
    assert await projections.verify(engine) == []
    published = (await relay_once(engine)).sent
    assert [(topic, key) for topic, key, _, _ in published] == [
        (ORDERS_TOPIC, str(booked.booking_id).encode())
    ] * 2
    assert dict(published[1][3])["event_type"] == b"OrderReleased"


async def test_a_batch_records_its_outcomes_and_releases_in_one_transaction(
    engine: AsyncEngine,
) -> None:
    inventory = Inventory()
    service = OrderService(records(engine), inventory)
    first, second, third = await confirmed(service, 3)
    new = requested()
    refused = requested()
    inventory.answers[refused.booking_id] = ReservationOutcome.OVER_LIMIT
    batch = [cancelled(first), new, expired(second), refused, cancelled(first)]
    await service.handle_batch([Received(m, None) for m in batch])
    assert len(inventory.release_calls) == 1
    rows = await stored(
        engine, [first.booking_id, second.booking_id, new.booking_id, refused.booking_id]
    )
    later = [
        r
        for r in rows
        if r["version"] == 2 or r["stream_id"] in (new.booking_id, refused.booking_id)
    ]
    assert len(later) == 4
    assert len({r["recorded_at"] for r in later}) == 1  # one transaction, one time
    table = await order_rows(engine)
    assert [table[b.booking_id]["status"] for b in (first, second, third, new, refused)] == [
        "RELEASED",
        "RELEASED",
        "CONFIRMED",
        "CONFIRMED",
        "REJECTED",
    ]
    assert table[refused.booking_id]["reason"] == "customer_limit_reached"
    assert await count(engine, inbox) == 3 + 4  # the booking's second release was skipped
    assert await projections.verify(engine) == []


async def test_a_redelivered_release_or_a_second_one_is_applied_once(
    engine: AsyncEngine,
) -> None:
    inventory = Inventory()
    service = OrderService(records(engine), inventory)
    booked, other = await confirmed(service, 2)
    cancel = cancelled(booked)
    await service.handle_batch([Received(cancel, None)])
    await service.handle_batch([Received(cancel, None)])
    await service.handle_batch([Received(expired(booked), None)])
    redelivered = [Received(booked, None), Received(cancel, None), Received(cancelled(other), None)]
    with pytest.raises(AlreadyRecorded):  # the request's claim: the runner hands each over
        await service.handle_batch(redelivered)
    await as_the_runner_does(service.handle_batch, redelivered)
    assert [r["version"] for r in await stored(engine, [booked.booking_id])] == [1, 2]
    assert [r["version"] for r in await stored(engine, [other.booking_id])] == [1, 2]
    assert await projections.verify(engine) == []


async def test_concurrent_releases_of_one_booking_record_one(engine: AsyncEngine) -> None:
    """Eight messages releasing one booking (a cancellation and an expiry, on two replicas),
    each alone and at once: each asks inventory, which releases once; the stream's version 2
    is taken once, and every message is acknowledged."""
    inventory = Inventory()
    service = OrderService(records(engine), inventory)
    (booked,) = await confirmed(service)
    messages = [cancelled(booked) if n % 2 else expired(booked) for n in range(8)]
    await asyncio.gather(*(service.handle_batch([Received(m, None)]) for m in messages))
    assert [r["version"] for r in await stored(engine, [booked.booking_id])] == [1, 2]
    assert (await order_rows(engine))[booked.booking_id]["status"] == "RELEASED"
    assert await projections.verify(engine) == []


async def test_a_release_of_a_rejected_or_unknown_booking_records_nothing(
    engine: AsyncEngine,
) -> None:
    inventory = Inventory()
    service = OrderService(records(engine), inventory)
    rejected = requested()
    inventory.answers[rejected.booking_id] = ReservationOutcome.INSUFFICIENT
    await service.handle_batch([Received(rejected, None)])
    for message in (cancelled(rejected), expired(requested())):
        with pytest.raises(ImpossibleRelease):
            await service.handle_batch([Received(message, None)])
    assert inventory.release_calls == []
    assert await count(engine, event_store) == 1
    assert await count(engine, inbox) == 1


async def test_a_release_inventory_holds_nothing_for_records_nothing(engine: AsyncEngine) -> None:
    inventory = Inventory()
    service = OrderService(records(engine), inventory)
    (booked,) = await confirmed(service)
    del inventory.held[booked.booking_id]  # inventory's data broken
    with pytest.raises(ImpossibleRelease):
        await service.handle_batch([Received(cancelled(booked), None)])
    assert await count(engine, event_store) == 1
    assert (await order_rows(engine))[booked.booking_id]["status"] == "CONFIRMED"


async def test_orders_are_read_from_their_streams_a_page_at_a_time(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repository, "STREAMS_PAGE", 3)
    inventory = Inventory()
    service = OrderService(records(engine), inventory)
    booked = await confirmed(service, 5)
    await service.handle_batch([Received(cancelled(m), None) for m in booked[:3]])
    unknown = uuid.uuid4()
    states = await records(engine).orders([*(m.booking_id for m in booked), unknown])
    assert [states[m.booking_id].status for m in booked] == [OrderStatus.RELEASED] * 3 + [
        OrderStatus.CONFIRMED
    ] * 2
    assert [states[m.booking_id].version for m in booked] == [2, 2, 2, 1, 1]
    assert unknown not in states
    async with engine.begin() as conn:  # a second outcome, as no code writes it
        await conn.execute(
            text(
                "INSERT INTO event_store (event_id, stream_id, stream_type, version, event_type, "
                "schema_version, payload, actor, recorded_at, topic, message_key, published_at) "
                "SELECT UUID(), stream_id, stream_type, 3, event_type, schema_version, payload, "
                "'tamper', recorded_at, NULL, NULL, recorded_at FROM event_store "
                "WHERE stream_id = :b AND version = 1"
            ),
            {"b": str(booked[0].booking_id)},
        )
    with pytest.raises(ImpossibleHistory, match="cannot follow"):
        await records(engine).orders([booked[0].booking_id])


async def test_a_release_of_a_stream_at_version_2_records_nothing_not_even_its_claim(
    engine: AsyncEngine,
) -> None:
    """The port alone: a second version 2 fails on the store's key, and the message's claim
    goes with it (it is acknowledged only once its booking is found released)."""
    inventory = Inventory()
    service = OrderService(records(engine), inventory)
    (booked,) = await confirmed(service)
    await service.handle_batch([Received(cancelled(booked), None)])
    async with engine.connect() as conn:
        _, released = await STORE.stream(conn, booked.booking_id)
    assert released.version == 2
    again = dataclasses.replace(released.event, message_id=uuid.uuid4())
    late = uuid.uuid4()
    with pytest.raises(AlreadyRecorded):
        await records(engine).record([late], lambda now: [(again, Cause(actor=CONSUMER))])
    async with engine.connect() as conn:
        claimed = await conn.scalar(select(inbox.c.message_id).where(inbox.c.message_id == late))
    assert claimed is None
    assert [r["version"] for r in await stored(engine, [booked.booking_id])] == [1, 2]
