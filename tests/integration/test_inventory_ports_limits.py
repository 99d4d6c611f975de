"""Inventory's records port for limits per customer and releases, checked against the SQL
adapter on the real database and the in-memory stand-in alike (the fixtures of
test_inventory_ports.py)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes.inventory import CheckFailed
from tests.integration.inventory_subjects import (
    CAUSE,
    Subject,
    database,
    deciding,
    given_event,
    subject,
)
from ticketing.contracts.inventory import (
    ReleaseItem,
    ReleaseItemResult,
    ReleaseOutcome,
    ReservationItem,
    ReservationOutcome,
)
from ticketing.inventory.decisions import DecideReleases, Releases, decide_release
from ticketing.inventory.domain import EventState, SeatsReleased
from ticketing.inventory.ports import ReleaseSeats, ReserveSeats
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.reservation import Release, Reservation
from ticketing.inventory.service import InventoryService
from ticketing.shared.db import sql
from ticketing.shared.db.unit_of_work import AlreadyRecorded

__all__ = ["database", "subject"]  # fixtures


def releasing(items: Sequence[ReleaseItem], seen: list[Any] | None = None) -> DecideReleases:
    """Inventory's own release decision for ``items``; what it was given is added to ``seen``."""

    def decide_batch(
        states: Mapping[uuid.UUID, EventState], existing: Mapping[uuid.UUID, Reservation]
    ) -> Releases:
        if seen is not None:
            seen.append((dict(states), dict(existing)))
        return decide_release(items, existing, states)

    return decide_batch


def giving_back(state: EventState, reservation: Reservation, left: int) -> DecideReleases:
    """A release decided from ``state`` whatever the records hold, leaving ``left`` seats."""
    fact = SeatsReleased(
        event_id=state.id,
        booking_id=reservation.booking_id,
        ticket_count=reservation.ticket_count,
        left_capacity=left,
        reason="cancelled",
    )
    after = dataclasses.replace(state, left_capacity=left, version=state.version + 1)
    marked = dataclasses.replace(reservation, release=Release("cancelled", left))
    return lambda states, existing: Releases(
        [], [(after.version, fact)], {state.id: after}, [marked]
    )


async def test_seats_held_are_counted_only_at_events_with_a_limit_and_only_while_held(
    subject: Subject,
) -> None:
    inventory = InventoryService(subject.records)
    limited = await given_event(subject.records, capacity=10, limit=5)
    free = await given_event(subject.records, capacity=10)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    kept, released = uuid.uuid4(), uuid.uuid4()
    await inventory.reserve_many(
        [
            ReservationItem(limited.id, kept, 2, customer_id=alice),
            ReservationItem(limited.id, released, 1, customer_id=alice),
            ReservationItem(limited.id, uuid.uuid4(), 6, customer_id=alice),  # over the limit
            ReservationItem(free.id, uuid.uuid4(), 3, customer_id=alice),
        ],
        CAUSE,
    )
    await inventory.release_many([ReleaseItem(limited.id, released, "expired")], CAUSE)
    seen: list[Any] = []
    pairs = [(limited.id, alice), (free.id, alice), (limited.id, bob), (uuid.uuid4(), alice)]
    await subject.records.reserve(
        ReserveSeats([limited.id, free.id], deciding([], seen), CAUSE, {}, customers=pairs)
    )
    await subject.records.reserve(
        ReserveSeats([free.id], deciding([], seen), CAUSE, {}, customers=pairs)
    )
    (_, _, held), (_, _, none) = seen
    assert held == {(limited.id, alice): 2}
    assert none == {}


async def test_a_release_marks_the_reservation_and_gives_its_seats_back_with_its_cause(
    subject: Subject,
) -> None:
    inventory = InventoryService(subject.records)
    state = await given_event(subject.records, capacity=5)
    booking, customer = uuid.uuid4(), uuid.uuid4()
    await inventory.reserve_many(
        [ReservationItem(state.id, booking, 2, customer_id=customer)], CAUSE
    )
    message = CAUSE.caused_by("message-9", "booking-9")
    seen: list[Any] = []
    items = [
        ReleaseItem(state.id, booking, "expired"),
        ReleaseItem(state.id, uuid.uuid4(), "expired"),
    ]
    decided = await subject.records.release(
        ReleaseSeats(
            [state.id],
            [i.booking_id for i in items],
            releasing(items, seen),
            CAUSE,
            {booking: message},
        )
    )
    assert decided.results == [
        ReleaseItemResult(booking, ReleaseOutcome.RELEASED, 2, 5),
        ReleaseItemResult(items[1].booking_id, ReleaseOutcome.NOT_RESERVED),
    ]
    ((states, existing),) = seen
    assert states == {state.id: dataclasses.replace(state, left_capacity=3, version=2)}
    assert set(existing) == {booking}
    assert await subject.left(state.id) == 5
    assert await subject.reservations(booking) == {
        booking: Reservation(
            booking,
            state.id,
            2,
            ReservationOutcome.RESERVED,
            3,
            customer,
            Release("expired", 5),
        )
    }
    *_, (released, cause) = await subject.history(state.id)
    assert released == SeatsReleased(
        event_id=state.id, booking_id=booking, ticket_count=2, left_capacity=5, reason="expired"
    )
    assert cause == message
    again = await inventory.release_many([items[0]], CAUSE)
    assert again == decided.results[:1]
    assert len(await subject.history(state.id)) == 3


async def test_a_stale_release_is_already_recorded_and_records_nothing(subject: Subject) -> None:
    inventory = InventoryService(subject.records)
    state = await given_event(subject.records, capacity=5)
    first, second = uuid.uuid4(), uuid.uuid4()
    await inventory.reserve_many(
        [ReservationItem(state.id, first, 2), ReservationItem(state.id, second, 1)], CAUSE
    )
    (held,) = (await subject.reservations(first)).values()
    stale = dataclasses.replace(state, left_capacity=3, version=2)  # before the second
    with pytest.raises(AlreadyRecorded):
        await subject.records.release(
            ReleaseSeats([state.id], [first], giving_back(stale, held, 5), CAUSE, {})
        )
    assert await subject.left(state.id) == 2
    assert (await subject.reservations(first))[first].release is None
    assert len(await subject.history(state.id)) == 3


async def test_seats_given_back_beyond_the_total_are_refused_but_not_as_already_recorded(
    subject: Subject,
) -> None:
    inventory = InventoryService(subject.records)
    state = await given_event(subject.records, capacity=4)
    booking = uuid.uuid4()
    await inventory.reserve_many([ReservationItem(state.id, booking, 1)], CAUSE)
    (held,) = (await subject.reservations(booking)).values()
    now = dataclasses.replace(state, left_capacity=3, version=2)
    with pytest.raises((DBAPIError, CheckFailed)) as refused:
        await subject.records.release(
            ReleaseSeats([state.id], [booking], giving_back(now, held, 5), CAUSE, {})
        )
    assert not isinstance(refused.value, AlreadyRecorded)
    assert await subject.left(state.id) == 3
    assert (await subject.reservations(booking))[booking].release is None
    assert len(await subject.history(state.id)) == 2


async def test_limits_and_releases_cost_one_read_each_and_no_limit_costs_nothing(
    database: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reservation at an event with a limit reads the seats held after the lock; one
    without sends what it always did; a release locks, reads the reservations, then writes."""
    records = SqlInventoryRecords(database)
    limited = await given_event(records, capacity=5, limit=2)
    free = await given_event(records, capacity=5)
    sent: list[str] = []
    on_cursor = sql._on_cursor

    async def counted(conn: Any, statement: str, send: Any) -> Any:
        if conn.engine is database:
            sent.append(statement.split(maxsplit=1)[0])
        return await on_cursor(conn, statement, send)

    def orm(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement.split(maxsplit=1)[0])

    monkeypatch.setattr(sql, "_on_cursor", counted)
    event.listen(database.sync_engine, "before_cursor_execute", orm)
    inventory = InventoryService(records)
    customer, booking = uuid.uuid4(), uuid.uuid4()
    try:
        await inventory.reserve_many(
            [ReservationItem(free.id, booking, 1, customer_id=customer)], CAUSE
        )
        unlimited, sent[:] = list(sent), []
        await inventory.reserve_many(
            [ReservationItem(limited.id, uuid.uuid4(), 1, customer_id=customer)], CAUSE
        )
        with_limit, sent[:] = list(sent), []
        await inventory.release_many([ReleaseItem(free.id, booking, "cancelled")], CAUSE)
    finally:
        event.remove(database.sync_engine, "before_cursor_execute", orm)
    assert unlimited == ["SELECT", "INSERT"]
    assert with_limit == ["SELECT", "SELECT", "INSERT"]
    assert sent == ["SELECT", "SELECT", "INSERT"]
