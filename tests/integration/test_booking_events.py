"""Booking's event store against the real database: customers and bookings are events with
their projections, settlements happen once per booking whatever arrives (batches, races,
redeliveries, unknown bookings), and verify/rebuild keep the tables equal to the fold."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.broker import as_the_runner_does
from tests.integration.booking_db import (
    CLIENT,
    customer,
    engine,
    pending_bookings,
    service,
    status,
    stream,
)
from tests.unit.booking_world import confirmation, rejection
from ticketing.booking import projections
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.booking.tables import bookings, customers, event_store, inbox
from ticketing.contracts.booking import BookingStatus, CustomerCreate
from ticketing.contracts.events import OrderConfirmed, OrderRejected
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.errors import Conflict, NotFound
from ticketing.shared.messaging.consumer import Received

__all__ = ["engine", "service"]  # fixtures


async def test_a_customer_is_registered_once_as_an_event(
    engine: AsyncEngine, service: BookingService
) -> None:
    email = f"ada.{uuid.uuid4().hex[:10]}@example.com"
    created = await service.create_customer(CustomerCreate("Ada", email, "1 Lane"), CLIENT)
    with pytest.raises(Conflict):
        await service.create_customer(CustomerCreate("Ada again", email), CLIENT)
    (registered,) = await stream(engine, created.id)
    assert (registered.event_type, registered.version, registered.actor) == (
        "CustomerRegistered",
        1,
        "box-office",
    )
    assert registered.event.email == email
    assert registered.correlation_id == "req-1"
    async with engine.connect() as conn:
        same_email = await conn.scalar(
            select(func.count())
            .select_from(event_store)
            .where(event_store.c.payload.contains(email))
        )
    assert same_email == 1  # the refused one recorded nothing
    assert await projections.verify(engine) == []


async def test_a_batch_of_outcomes_settles_each_booking_with_its_own_cause(
    engine: AsyncEngine, service: BookingService
) -> None:
    booked = await pending_bookings(engine, await customer(service), 3)
    outcomes: list[OrderConfirmed | OrderRejected] = [
        confirmation(booked[0].id),
        rejection(booked[1].id),
        confirmation(booked[2].id),
    ]
    await service.apply_saga_answers(
        [Received(outcome, f"trace-{n}") for n, outcome in enumerate(outcomes)]
    )
    for n, (booking, outcome) in enumerate(zip(booked, outcomes, strict=True)):
        history = await stream(engine, booking.id)
        assert [(r.version, r.event_type) for r in history] == [
            (1, "BookingRequested"),
            (2, "BookingConfirmed" if n != 1 else "BookingRejected"),
        ]
        settled = history[1]
        assert (settled.actor, settled.causation_id, settled.correlation_id) == (
            CONSUMER,
            str(outcome.message_id),
            f"trace-{n}",
        )
        assert await status(engine, booking.id) == (
            "CONFIRMED" if n != 1 else "REJECTED",
            2,
        )
    assert await projections.verify(engine) == []


async def test_a_batch_with_a_settled_or_unknown_booking_settles_the_rest_and_claims_all(
    engine: AsyncEngine, service: BookingService
) -> None:
    settled, pending, untouched = await pending_bookings(engine, await customer(service), 3)
    first = confirmation(settled.id)
    await service.apply_saga_answers([Received(first, None)])
    unknown = uuid.uuid4()
    batch: list[OrderConfirmed | OrderRejected] = [
        rejection(settled.id),
        confirmation(pending.id),
        confirmation(unknown),
    ]
    await service.apply_saga_answers([Received(outcome, None) for outcome in batch])

    assert [r.event_type for r in await stream(engine, settled.id)] == [
        "BookingRequested",
        "BookingConfirmed",
    ]
    assert await status(engine, settled.id) == ("CONFIRMED", 2)
    assert await status(engine, pending.id) == ("CONFIRMED", 2)
    assert await stream(engine, unknown) == []  # no stream begun by a settlement
    assert await status(engine, untouched.id) == ("PENDING", 1)  # no outcome named it
    async with engine.connect() as conn:
        claimed = await conn.scalar(
            select(func.count())
            .select_from(inbox)
            .where(inbox.c.message_id.in_([outcome.message_id for outcome in batch]))
        )
    assert claimed == 3  # every message applied, once
    redelivered = [Received(outcome, None) for outcome in batch]
    with pytest.raises(AlreadyRecorded):  # the runner then hands each message over alone
        await service.apply_saga_answers(redelivered)
    await as_the_runner_does(service.apply_saga_answers, redelivered)
    assert len(await stream(engine, pending.id)) == 2
    assert await projections.verify(engine) == []


async def test_racing_outcomes_for_one_booking_settle_it_once(
    engine: AsyncEngine, service: BookingService
) -> None:
    (booking,) = await pending_bookings(engine, await customer(service), 1)
    outcomes = [confirmation(booking.id) if n % 2 else rejection(booking.id) for n in range(18)]
    alone = [service.apply_saga_answers([Received(outcome, None)]) for outcome in outcomes[:6]]
    pairs = [[Received(o, None) for o in outcomes[n : n + 2]] for n in range(6, 18, 2)]
    together = [as_the_runner_does(service.apply_saga_answers, pair) for pair in pairs]
    await asyncio.gather(*alone, *together)
    history = await stream(engine, booking.id)
    assert [r.version for r in history] == [1, 2]
    settled_by = history[1].causation_id
    winner = next(o for o in outcomes if str(o.message_id) == settled_by)
    expected = "CONFIRMED" if isinstance(winner, OrderConfirmed) else "REJECTED"
    assert await status(engine, booking.id) == (expected, 2)
    assert await projections.verify(engine) == []


async def test_verify_finds_what_the_tables_got_wrong_and_rebuild_mends_it(
    engine: AsyncEngine, service: BookingService
) -> None:
    customer_id = await customer(service)
    tampered, lost, kept = await pending_bookings(engine, customer_id, 3)
    await service.apply_saga_answers([Received(confirmation(kept.id), None)])
    orphan = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            update(bookings).where(bookings.c.id == tampered.id).values(status="CONFIRMED")
        )
        await conn.execute(
            update(customers).where(customers.c.id == customer_id).values(name="Mallory")
        )
        await conn.execute(bookings.delete().where(bookings.c.id == lost.id))
        await conn.execute(
            text(
                "INSERT INTO bookings (id, customer_id, event_id, ticket_count, unit_price, "
                "total_price, status, created_at, updated_at, version) VALUES (:id, :c, :e, 1, "
                "1, 1, 'PENDING', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), 1)"
            ),
            {"id": str(orphan), "c": str(customer_id), "e": str(uuid.uuid4())},
        )
    problems = await projections.verify(engine)
    assert any(f"bookings {tampered.id}: the table holds" in p for p in problems)
    assert any(f"customers {customer_id}: the table holds" in p for p in problems)
    assert any(f"bookings {lost.id}: missing" in p for p in problems)
    assert any(f"bookings {orphan}:" in p and "has no events" in p for p in problems)

    done = await projections.rebuild(engine)
    assert done.broken == []
    assert done.deleted["bookings"] == 1
    assert done.written["bookings"] >= 2
    assert done.written["customers"] >= 1
    assert await projections.verify(engine) == []
    assert await status(engine, tampered.id) == ("PENDING", 1)
    assert await status(engine, lost.id) == ("PENDING", 1)
    assert await status(engine, kept.id) == ("CONFIRMED", 2)
    again = await projections.rebuild(engine)
    assert sum(again.written.values()) == sum(again.deleted.values()) == 0


async def test_as_of_folds_the_booking_then_and_names_no_booking_by_another_streams_id(
    engine: AsyncEngine, service: BookingService
) -> None:
    customer_id = await customer(service)
    (booking,) = await pending_bookings(engine, customer_id, 1)
    await service.apply_saga_answers([Received(rejection(booking.id), None)])
    requested, settled = await stream(engine, booking.id)
    before = await service.get_booking(
        booking.id, as_of=settled.recorded_at - timedelta(microseconds=1)
    )
    assert (before.status, before.reason) == (BookingStatus.PENDING, None)
    after = await service.get_booking(booking.id, as_of=settled.recorded_at)
    assert after == await service.get_booking(booking.id)
    assert after.reason == "insufficient_capacity"
    for stream_id, at in [
        (booking.id, requested.recorded_at - timedelta(microseconds=1)),
        (customer_id, datetime.now(UTC)),  # a customer's stream is not a booking
        (uuid.uuid4(), datetime.now(UTC)),
    ]:
        with pytest.raises(NotFound):
            await service.get_booking(stream_id, as_of=at)
    with pytest.raises(NotFound):
        await service.booking_history(customer_id, limit=10, cursor=None)
