"""The reservation path's statements, on the driver's cursor: each event's row locked (its
stream's snapshot), the reservations recorded and read, the seats customers hold counted, and
the seats released. Every reservation or release of an event takes that event's lock first, so
what is read under it cannot change before the transaction ends."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.contracts.inventory import ReservationOutcome
from ticketing.inventory.decisions import CustomerSeats
from ticketing.inventory.domain import (
    EVENT_STREAM,
    EventState,
    ReservationRefused,
    SeatsReleased,
    SeatsReserved,
)
from ticketing.inventory.repository import STORE, AnyRow
from ticketing.inventory.reservation import Release, Reservation
from ticketing.inventory.tables import reservations
from ticketing.shared.clock import utcnow
from ticketing.shared.db import sql
from ticketing.shared.store.eventstore import Cause, Pending

_RESERVATION_COLUMNS = (
    "booking_id",
    "event_id",
    "ticket_count",
    "status",
    "left_capacity",
    "customer_id",
    "created_at",
)
_ADD_RESERVATIONS = sql.insert_sql(reservations, _RESERVATION_COLUMNS)
SET_SEATS = "UPDATE events SET left_capacity = %s, version = %s WHERE id = %s"


async def lock_states(
    conn: AsyncConnection, event_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, EventState]:
    """The state of each existing event (its projection row: the stream's snapshot), row-locked
    until the transaction ends.

    Locks are taken in id order, so two transactions locking overlapping events never deadlock.
    """
    if not event_ids:
        return {}
    ordered = sorted(event_ids)
    rows = await sql.fetch_all(
        conn,
        "SELECT id, venue_id, name, total_capacity, left_capacity, ticket_price, "  # noqa: S608
        "starts_at, version, max_tickets_per_customer "
        f"FROM events WHERE id IN ({sql.placeholders(len(ordered))}) "
        "ORDER BY id FOR UPDATE",
        [str(event_id) for event_id in ordered],
    )
    return {
        uuid.UUID(str(row[0])): EventState(
            id=uuid.UUID(str(row[0])),
            venue_id=uuid.UUID(str(row[1])),
            name=row[2],
            total_capacity=int(row[3]),
            left_capacity=int(row[4]),
            ticket_price=row[5],
            starts_at=None if row[6] is None else row[6].replace(tzinfo=UTC),
            version=int(row[7]),
            max_tickets_per_customer=None if row[8] is None else int(row[8]),
        )
        for row in rows
    }


def reservation_statements(
    appended: Sequence[tuple[int, SeatsReserved | ReservationRefused]],
    states: Sequence[EventState],
    new: Sequence[Reservation],
    cause: Cause,
    causes: Mapping[uuid.UUID, Cause] | None = None,
) -> list[sql.Statement]:
    """The statements recording a batch's decisions (for :func:`sql.commit_all`): the events
    first, so that a stale stream version fails the batch on the store's unique key before
    anything else is written; then the reservations (a booking id that already has one fails on
    the primary key); then each event's new state. The ``left_capacity >= 0`` check refuses a
    state that would oversell. ``causes`` holds the cause of each booking id whose item named
    its own (``cause`` is the rest's)."""
    if not appended:
        return []
    now = utcnow()
    rows = [
        (
            str(r.booking_id),
            str(r.event_id),
            r.ticket_count,
            r.status.value,
            r.left_capacity,
            None if r.customer_id is None else str(r.customer_id),
            now,
        )
        for r in new
    ]
    return [
        STORE.append(_pending(appended, causes), cause, now),
        sql.Statement(_ADD_RESERVATIONS, rows, rows=True),
        *_set_seats(states),
    ]


def _pending(
    appended: Sequence[tuple[int, SeatsReserved | ReservationRefused | SeatsReleased]],
    causes: Mapping[uuid.UUID, Cause] | None,
) -> list[Pending]:
    """Each appended event as a write to its event's stream, with the cause its booking id
    named in ``causes`` (None: the batch's own cause)."""
    own = causes or {}
    return [
        Pending(e.event_id, EVENT_STREAM, version, e, own.get(e.booking_id))
        for version, e in appended
    ]


def _set_seats(states: Sequence[EventState]) -> list[sql.Statement]:
    """The statements giving each event its new seats left and its stream's version."""
    return [
        sql.Statement(SET_SEATS, [state.left_capacity, state.version, str(state.id)])
        for state in states
    ]


async def get_reservations(
    conn: AsyncConnection, booking_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Reservation]:
    query = select(reservations).where(reservations.c.booking_id.in_(booking_ids))
    return {row.booking_id: reservation_of_row(row) for row in await conn.execute(query)}


def reservation_of_row(row: AnyRow) -> Reservation:
    """A reservation from its row of the ``reservations`` table."""
    return Reservation(
        booking_id=row.booking_id,
        event_id=row.event_id,
        ticket_count=row.ticket_count,
        status=ReservationOutcome(row.status),
        left_capacity=row.left_capacity,
        customer_id=row.customer_id,
        release=None
        if row.release_reason is None
        else Release(row.release_reason, row.release_left_capacity),
    )


_RELEASE = (
    "UPDATE reservations SET released_at = %s, release_reason = %s, "
    "release_left_capacity = %s WHERE booking_id = %s AND released_at IS NULL"
)


async def held_seats(
    conn: AsyncConnection, pairs: Sequence[CustomerSeats]
) -> dict[CustomerSeats, int]:
    """The seats each customer of ``pairs`` holds now at its event (reserved and not released;
    a pair holding none is absent), through the (customer, event) index."""
    if not pairs:
        return {}
    customers = sorted({str(customer_id) for _, customer_id in pairs})
    event_ids = sorted({str(event_id) for event_id, _ in pairs})
    rows = await sql.fetch_all(
        conn,
        "SELECT event_id, customer_id, SUM(ticket_count) FROM reservations "  # noqa: S608
        f"WHERE customer_id IN ({sql.placeholders(len(customers))}) "
        f"AND event_id IN ({sql.placeholders(len(event_ids))}) "
        "AND status = 'reserved' AND released_at IS NULL GROUP BY event_id, customer_id",
        [*customers, *event_ids],
    )
    wanted = set(pairs)
    held = {(uuid.UUID(str(row[0])), uuid.UUID(str(row[1]))): int(row[2]) for row in rows}
    return {pair: count for pair, count in held.items() if pair in wanted}


def release_statements(
    appended: Sequence[tuple[int, SeatsReleased]],
    states: Sequence[EventState],
    released: Sequence[Reservation],
    cause: Cause,
    causes: Mapping[uuid.UUID, Cause] | None = None,
) -> list[sql.Statement]:
    """The statements recording a batch of releases (for :func:`sql.commit_all`): the events
    first (a stale stream version fails the batch on the store's unique key), then each
    reservation marked released (only one not released yet), then each event's new state (the
    ``left_capacity <= total_capacity`` check refuses seats given back twice). ``causes`` as
    for :func:`reservation_statements`."""
    if not appended:
        return []
    now = utcnow()
    marks = []
    for reservation in released:
        assert reservation.release is not None
        marks.append(
            sql.Statement(
                _RELEASE,
                [
                    now,
                    reservation.release.reason,
                    reservation.release.left_capacity,
                    str(reservation.booking_id),
                ],
            )
        )
    return [
        STORE.append(_pending(appended, causes), cause, now),
        *marks,
        *_set_seats(states),
    ]
