"""Order's records port, checked against the in-memory stand-in and the SQL adapter
alike, so that a rule the fake leaves out shows up as a failing case here rather than as a unit
test that passes while production fails."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes.order import InMemoryOrderRecords, SagaInventory
from tests.harness.broker import as_the_runner_does
from tests.harness.databases import own_databases
from tests.integration.order_db import (
    engine,
    order_db,
    requested,
)
from ticketing.contracts.events import BookingRequested, OrderConfirmed, OrderReleased
from ticketing.contracts.inventory import ReservationOutcome
from ticketing.order import tables as order_tables
from ticketing.order.domain import OrderEvent, OrderStatus, decide_verdict
from ticketing.order.repository import SqlOrderRecords
from ticketing.order.service import CONSUMER, OrderRecords, OrderService
from ticketing.shared.db.engine import create_engine
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.messaging import inbox as inbox_ops
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause

__all__ = ["engine", "order_db"]  # fixtures

Outcomes = Sequence[tuple[OrderEvent, Cause]]


@pytest.fixture(params=["memory", "sql"])
async def records(request: pytest.FixtureRequest) -> AsyncIterator[OrderRecords]:
    if request.param == "memory":
        yield InMemoryOrderRecords()
        return
    async with own_databases("order") as settings:
        sql_engine = create_engine(settings, "order")
        try:
            yield SqlOrderRecords(sql_engine, consumer=CONSUMER)
        finally:
            await sql_engine.dispose()


def outcome(message: BookingRequested, now: datetime) -> tuple[OrderEvent, Cause]:
    event = decide_verdict(
        message,
        ReservationOutcome.RESERVED,
        order_id=uuid.uuid4(),
        message_id=uuid.uuid4(),
        now=now,
    )
    return event, Cause(actor=CONSUMER).caused_by(str(message.message_id), None)


def deciding(*messages: BookingRequested) -> Callable[[datetime], Outcomes]:
    return lambda now: [outcome(m, now) for m in messages]


async def claimed(records: OrderRecords, message_id: uuid.UUID) -> bool:
    """Whether the adapter's inbox holds ``message_id``."""
    if isinstance(records, InMemoryOrderRecords):
        return message_id in records.claimed
    assert isinstance(records, SqlOrderRecords)
    database = records._engine
    return await inbox_ops.seen(database, order_tables.inbox, CONSUMER, message_id)


async def nothing_of(records: OrderRecords, *messages: BookingRequested) -> bool:
    for message in messages:
        if await claimed(records, message.message_id):
            return False
        if await records.has_verdict(message.booking_id):
            return False
    return True


async def test_two_outcomes_for_one_booking_in_one_call_are_refused(
    records: OrderRecords,
) -> None:
    """The SQL store refuses a second version 1 of a stream within one statement; the fake
    keeps the last outcome and claims both messages."""
    first = requested()
    second = dataclasses.replace(first, message_id=uuid.uuid4())
    with pytest.raises(AlreadyRecorded):
        await records.record([first.message_id, second.message_id], deciding(first, second))
    assert await nothing_of(records, first, second)


async def test_a_message_twice_in_one_call_is_refused_and_records_nothing(
    records: OrderRecords,
) -> None:
    first, other = requested(), requested()
    with pytest.raises(AlreadyRecorded):
        await records.record([first.message_id, first.message_id], deciding(first, other))
    assert await nothing_of(records, first, other)


async def test_decide_at_is_given_aware_utc(records: OrderRecords) -> None:
    seen: list[datetime] = []
    message = requested()

    def decide_at(now: datetime) -> Outcomes:
        seen.append(now)
        return [outcome(message, now)]

    await records.record([message.message_id], decide_at)
    assert seen
    assert all(
        now.utcoffset() is not None and now.utcoffset() == UTC.utcoffset(now) for now in seen
    )


async def test_an_empty_call_records_nothing_and_does_not_fail(records: OrderRecords) -> None:
    """The fake accepts an empty unit; the SQL adapter's statements index the first outcome."""
    await records.record([], lambda now: [])


async def test_a_non_duplicate_integrity_error_is_not_translated_and_records_nothing(
    engine: AsyncEngine,
) -> None:
    sql_records = SqlOrderRecords(engine, consumer=CONSUMER)
    message = requested()

    def broken(now: datetime) -> Outcomes:
        event, _ = outcome(message, now)
        return [(event, Cause(actor=None))]  # type: ignore[arg-type]  # NOT NULL broken

    with pytest.raises(IntegrityError) as raised:
        await sql_records.record([message.message_id], broken)
    assert not isinstance(raised.value, AlreadyRecorded)
    assert await nothing_of(sql_records, message)


async def test_two_bookings_sharing_a_message_id_each_get_an_outcome_or_keep_no_seats(
    records: OrderRecords,
) -> None:
    """A producer's bug: two bookings under one message id. The second was acked as "applied
    before" (its id was claimed) with no outcome and its seats reserved. Now a message alone is
    skipped only when its booking's outcome is recorded: the second is refused (the runner
    retries it, then dead-letters it, where an operator sees it), never silently acked."""
    inventory = SagaInventory()
    event_id = inventory.schedule(capacity=10)
    first = dataclasses.replace(requested(), event_id=event_id)
    second = dataclasses.replace(requested(), event_id=event_id, message_id=first.message_id)
    service = OrderService(records, inventory)
    with pytest.raises(AlreadyRecorded):
        await as_the_runner_does(
            service.handle_batch, [Received(first, None), Received(second, None)]
        )
    assert await records.has_verdict(first.booking_id)
    assert not await records.has_verdict(second.booking_id)


def released(event: OrderEvent, now: datetime, message: uuid.UUID) -> tuple[OrderEvent, Cause]:
    """The release of the confirmed order ``event``."""
    assert isinstance(event, OrderConfirmed)
    release = OrderReleased(
        message_id=uuid.uuid4(),
        order_id=event.order_id,
        booking_id=event.booking_id,
        event_id=event.event_id,
        ticket_count=event.ticket_count,
        reason="cancelled",
        released_at=now,
    )
    return release, Cause(actor=CONSUMER).caused_by(str(message), None)


async def test_a_release_is_version_2_once_and_orders_fold_each_stream(
    records: OrderRecords,
) -> None:
    first, second = requested(), requested()
    made = [outcome(first, datetime.now(UTC)), outcome(second, datetime.now(UTC))]
    await records.record([first.message_id, second.message_id], lambda now: made)
    states = await records.orders([first.booking_id, second.booking_id, uuid.uuid4()])
    assert set(states) == {first.booking_id, second.booking_id}
    confirmation = made[0][0]
    cancel, again = uuid.uuid4(), uuid.uuid4()
    await records.record([cancel], lambda now: [released(confirmation, now, cancel)])
    with pytest.raises(AlreadyRecorded):  # a second version 2, with a message of its own
        await records.record([again], lambda now: [released(confirmation, now, again)])
    assert not await claimed(records, again)
    third = requested()
    with pytest.raises(AlreadyRecorded):  # a new outcome and a claimed message: nothing at all
        await records.record([third.message_id, cancel], deciding(third))
    assert not await records.has_verdict(third.booking_id)
    states = await records.orders([first.booking_id, second.booking_id])
    assert (states[first.booking_id].status, states[first.booking_id].version) == (
        OrderStatus.RELEASED,
        2,
    )
    assert (states[second.booking_id].status, states[second.booking_id].version) == (
        OrderStatus.CONFIRMED,
        1,
    )
