"""Inventory's records port, checked against the SQL adapter on the real database and the
in-memory stand-in alike, so that the stand-in the fast use-case tests run on cannot drift from
what the database does."""

from __future__ import annotations

import dataclasses
import uuid
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
    taking,
)
from ticketing.contracts.inventory import ReservationItem, ReservationOutcome
from ticketing.inventory.domain import (
    EventScheduled,
    VenueRegistered,
    VenueState,
    decide_register_venue,
    evolve,
)
from ticketing.inventory.ports import ReserveSeats
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.reservation import Reservation
from ticketing.inventory.service import InventoryService
from ticketing.shared.db import sql
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.errors import InvalidInput

__all__ = ["database", "subject"]  # fixtures


async def test_a_venue_and_its_event_are_their_streams_first_versions_with_their_cause(
    subject: Subject,
) -> None:
    state = await given_event(subject.records, capacity=7)
    ((scheduled, cause),) = await subject.history(state.id)
    assert isinstance(scheduled, EventScheduled)
    assert cause == CAUSE
    ((registered, _),) = await subject.history(state.venue_id)
    assert isinstance(registered, VenueRegistered)
    assert await subject.left(state.id) == 7


async def test_a_venue_registered_twice_is_already_recorded(subject: Subject) -> None:
    registered = decide_register_venue(uuid.uuid4(), "Hall", "Road 1", 10)
    await subject.records.register_venue(registered, CAUSE)
    with pytest.raises(AlreadyRecorded):
        await subject.records.register_venue(dataclasses.replace(registered, name="B"), CAUSE)
    assert [e for e, _ in await subject.history(registered.venue_id)] == [registered]


async def test_an_event_at_no_venue_is_not_decided_and_a_refused_one_records_nothing(
    subject: Subject,
) -> None:
    asked: list[VenueState] = []

    def refuse(venue: VenueState) -> EventScheduled:
        asked.append(venue)
        raise InvalidInput("no")

    assert await subject.records.schedule_event(uuid.uuid4(), refuse, CAUSE) is None
    assert asked == []
    registered = decide_register_venue(uuid.uuid4(), "Hall", "Road 1", 10)
    await subject.records.register_venue(registered, CAUSE)
    with pytest.raises(InvalidInput):
        await subject.records.schedule_event(registered.venue_id, refuse, CAUSE)
    assert asked == [evolve(None, registered)]


async def test_decide_gets_the_events_states_and_only_the_reservations_asked_for(
    subject: Subject,
) -> None:
    state = await given_event(subject.records, capacity=5)
    booked, unknown = uuid.uuid4(), uuid.uuid4()
    await subject.records.reserve(
        ReserveSeats([state.id], deciding([ReservationItem(state.id, booked, 2)]), CAUSE, {})
    )
    seen: list[Any] = []
    nothing = deciding([], seen)
    await subject.records.reserve(ReserveSeats([state.id, uuid.uuid4()], nothing, CAUSE, {}))
    await subject.records.reserve(
        ReserveSeats([state.id], nothing, CAUSE, {}, existing_of=[booked, unknown])
    )
    after = dataclasses.replace(state, left_capacity=3, version=2)
    mine = Reservation(booked, state.id, 2, ReservationOutcome.RESERVED, 3)
    assert seen == [({state.id: after}, {}, {}), ({state.id: after}, {booked: mine}, {})]


async def test_a_booking_id_reserved_before_refuses_the_optimistic_call_whole(
    subject: Subject,
) -> None:
    state = await given_event(subject.records, capacity=5)
    first, second = uuid.uuid4(), uuid.uuid4()
    items = [ReservationItem(state.id, first, 1), ReservationItem(state.id, second, 1)]
    await subject.records.reserve(ReserveSeats([state.id], deciding(items[:1]), CAUSE, {}))
    with pytest.raises(AlreadyRecorded):
        await subject.records.reserve(ReserveSeats([state.id], deciding(items), CAUSE, {}))
    assert await subject.left(state.id) == 4
    assert set(await subject.reservations(first, second)) == {first}
    assert len(await subject.history(state.id)) == 2
    decided = await subject.records.reserve(
        ReserveSeats([state.id], deciding(items), CAUSE, {}, existing_of=[first, second])
    )
    assert [r.outcome for r in decided.results] == [ReservationOutcome.RESERVED] * 2
    assert await subject.left(state.id) == 3


async def test_a_stale_version_or_one_booking_id_twice_is_already_recorded(
    subject: Subject,
) -> None:
    state = await given_event(subject.records, capacity=5)
    first, late, twice = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await subject.records.reserve(ReserveSeats([state.id], taking(state, (first, 1)), CAUSE, {}))
    for stale in (taking(state, (late, 1)), taking(state, (first, 1))):
        with pytest.raises(AlreadyRecorded):
            await subject.records.reserve(ReserveSeats([state.id], stale, CAUSE, {}))
    now = dataclasses.replace(state, left_capacity=4, version=2)
    with pytest.raises(AlreadyRecorded):
        await subject.records.reserve(
            ReserveSeats([state.id], taking(now, (twice, 1), (twice, 1)), CAUSE, {})
        )
    assert set(await subject.reservations(first, late, twice)) == {first}
    assert await subject.left(state.id) == 4
    assert len(await subject.history(state.id)) == 2


async def test_seats_that_are_not_left_are_refused_but_not_as_already_recorded(
    subject: Subject,
) -> None:
    state = await given_event(subject.records, capacity=2)
    booking_id = uuid.uuid4()
    with pytest.raises((DBAPIError, CheckFailed)) as refused:
        await subject.records.reserve(
            ReserveSeats([state.id], taking(state, (booking_id, 3)), CAUSE, {})
        )
    assert not isinstance(refused.value, AlreadyRecorded)
    assert await subject.reservations(booking_id) == {}
    assert await subject.left(state.id) == 2
    assert len(await subject.history(state.id)) == 1


async def test_each_reservation_event_is_stored_with_its_bookings_cause_or_the_calls(
    subject: Subject,
) -> None:
    state = await given_event(subject.records, capacity=5)
    own, plain = uuid.uuid4(), uuid.uuid4()
    items = [ReservationItem(state.id, own, 1), ReservationItem(state.id, plain, 1)]
    message = CAUSE.caused_by("message-1", "booking-1")
    await subject.records.reserve(ReserveSeats([state.id], deciding(items), CAUSE, {own: message}))
    assert [cause for _, cause in (await subject.history(state.id))[1:]] == [message, CAUSE]


async def test_the_service_answers_a_repeat_as_it_first_answered_and_takes_seats_once(
    subject: Subject,
) -> None:
    inventory = InventoryService(subject.records)
    state = await given_event(subject.records, capacity=4)
    items = [ReservationItem(state.id, uuid.uuid4(), n) for n in (3, 2)]
    first = await inventory.reserve_many(items, CAUSE)
    again = await inventory.reserve_many(list(reversed(items)), CAUSE)
    assert [(r.outcome, r.left_capacity) for r in first] == [
        (ReservationOutcome.RESERVED, 1),
        (ReservationOutcome.INSUFFICIENT, 1),
    ]
    assert again == list(reversed(first))
    assert await subject.left(state.id) == 1
    assert len(await subject.history(state.id)) == 3


async def test_the_optimistic_attempt_costs_two_round_trips_and_a_retry_three(
    database: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path of every booking: the lock, then the writes with the ``COMMIT``; a repeat
    costs one more attempt, which also reads the reservations recorded."""
    records = SqlInventoryRecords(database)
    state = await given_event(records, capacity=5)
    sent: list[str] = []
    on_cursor = sql._on_cursor

    raw: list[str] = []

    def note(statement: str) -> None:
        raw.append(statement[:80])
        sent.append(statement.split(maxsplit=1)[0])

    # Only this engine's statements: the patched fast path is shared by every engine of the
    # process, and the test session's services run theirs in the same event loop.
    async def counted(conn: Any, statement: str, send: Any) -> Any:
        if conn.engine is database:
            note(statement)
        return await on_cursor(conn, statement, send)

    def orm(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        note(statement)

    monkeypatch.setattr(sql, "_on_cursor", counted)
    event.listen(database.sync_engine, "before_cursor_execute", orm)
    try:
        inventory = InventoryService(records)
        item = ReservationItem(state.id, uuid.uuid4(), 1)
        await inventory.reserve_many([item], CAUSE)
        optimistic, sent[:] = list(sent), []
        await inventory.reserve_many([item], CAUSE)
    finally:
        event.remove(database.sync_engine, "before_cursor_execute", orm)
    assert optimistic == ["SELECT", "INSERT"], raw  # the lock; the writes and the COMMIT
    assert sent == ["SELECT", "INSERT", "SELECT", "SELECT", "COMMIT"], raw
