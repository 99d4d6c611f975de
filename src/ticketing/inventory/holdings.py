"""The seats customers hold and their release, in the ``reservations`` table (statements on the
driver's cursor, like the rest of the reservation path). Both run with the events' rows locked
(:func:`ticketing.inventory.repository.lock_states`): every reservation or release of an event
takes that lock first, so what is read here cannot change before the transaction ends."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.inventory.decisions import CustomerSeats
from ticketing.inventory.domain import EVENT_STREAM, EventState, Reservation, SeatsReleased
from ticketing.inventory.repository import SET_SEATS, STORE
from ticketing.shared import sql
from ticketing.shared.clock import utcnow
from ticketing.shared.eventstore import Cause, Pending

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
    for :func:`ticketing.inventory.repository.reservation_statements`."""
    if not appended:
        return []
    now = utcnow()
    own = causes or {}
    pending = [
        Pending(e.event_id, EVENT_STREAM, version, e, own.get(e.booking_id))
        for version, e in appended
    ]
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
        STORE.append(pending, cause, now),
        *marks,
        *(
            sql.Statement(SET_SEATS, [state.left_capacity, state.version, str(state.id)])
            for state in states
        ),
    ]
