"""The SQL of changes to bookings decided on their locked rows: the locks (by id, or the holds
due) and the statements that record each :class:`~ticketing.booking.changes.Change` with its
events (the records' adapter runs them)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.booking.changes import Change
from ticketing.booking.domain import BOOKING_STREAM, BookingState
from ticketing.booking.repository import STORE, booking_state
from ticketing.booking.tables import bookings
from ticketing.contracts.booking import BookingStatus
from ticketing.shared.clock import naive_utc
from ticketing.shared.db import sql
from ticketing.shared.store.eventstore import Pending


async def lock_bookings(
    conn: AsyncConnection, booking_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, BookingState]:
    """The bookings' rows, locked until the transaction ends (in id order, as every locker
    takes them): the states a settlement decides from. Unknown ids are left out."""
    query = (
        select(bookings)
        .where(bookings.c.id.in_(booking_ids))
        .order_by(bookings.c.id)
        .with_for_update()
    )
    return {row.id: booking_state(row) for row in await conn.execute(query)}


# The projection's columns a change may set, and how each is read off the new state.
_CHANGED: tuple[tuple[str, Callable[[BookingState], Any]], ...] = (
    ("status", lambda s: s.booking.status.value),
    ("order_id", lambda s: None if s.booking.order_id is None else str(s.booking.order_id)),
    ("reason", lambda s: s.booking.reason),
    (
        "expires_at",
        lambda s: None if s.booking.expires_at is None else naive_utc(s.booking.expires_at),
    ),
    ("cancel_requested", lambda s: s.booking.cancel_requested),
    ("version", lambda s: s.version),
)


def changed_statements(
    changes: Sequence[Change], now: datetime
) -> tuple[sql.Statement, sql.Statement]:
    """The projection's update and the events' append for ``changes`` (not empty, at most one
    per booking, each decided from a row this transaction locked)."""
    ids = [str(change.state.booking.id) for change in changes]
    whens = " ".join(["WHEN %s THEN %s"] * len(changes))
    params: list[Any] = []
    for _, value_of in _CHANGED:
        params += [
            p for change in changes for p in (str(change.state.booking.id), value_of(change.state))
        ]
    params += [now, *ids]
    assignments = ", ".join(f"{column} = CASE id {whens} END" for column, _ in _CHANGED)
    update_projection = sql.Statement(
        f"UPDATE bookings SET {assignments}, "  # noqa: S608 - only placeholders are formatted in
        f"updated_at = %s WHERE id IN ({sql.placeholders(len(ids))})",
        params,
    )
    pending = [
        Pending(
            change.state.booking.id, BOOKING_STREAM, change.after_version + n, event, change.cause
        )
        for change in changes
        for n, event in enumerate(change.events, start=1)
    ]
    return update_projection, STORE.append(pending, changes[0].cause, now)


def publishes(changes: Sequence[Change]) -> bool:
    """Whether any of ``changes`` records an event the relay publishes."""
    return any(
        type(event).__name__ in STORE.publications for change in changes for event in change.events
    )


async def lock_due_holds(
    conn: AsyncConnection, now: datetime, limit: int
) -> dict[uuid.UUID, BookingState]:
    """Up to ``limit`` HELD bookings past their time (``now``: naive UTC), locked until the
    transaction ends; rows another transaction holds are skipped, so replicas sweeping at once
    each take other bookings rather than wait for one another."""
    query = (
        select(bookings)
        .where(bookings.c.status == BookingStatus.HELD.value, bookings.c.expires_at <= now)
        .order_by(bookings.c.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return {row.id: booking_state(row) for row in await conn.execute(query)}
