"""Booking's database adapter: SQLAlchemy Core statements on one connection."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import case, delete, insert, null, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.booking.tables import bookings, customers, idempotency_keys
from ticketing.contracts.booking import Booking, BookingStatus, Customer
from ticketing.shared.outbox import utcnow


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def _customer(row: Any) -> Customer:
    return Customer(
        id=row.id,
        name=row.name,
        email=row.email,
        address=row.address,
        created_at=_aware(row.created_at),
    )


def _booking(row: Any) -> Booking:
    return Booking(
        id=row.id,
        status=BookingStatus(row.status),
        customer_id=row.customer_id,
        event_id=row.event_id,
        ticket_count=row.ticket_count,
        unit_price=str(row.unit_price),
        total_price=str(row.total_price),
        created_at=_aware(row.created_at),
        order_id=row.order_id,
        reason=row.reason,
    )


async def add_customer(conn: AsyncConnection, customer: Customer) -> None:
    await conn.execute(
        insert(customers).values(
            id=customer.id,
            name=customer.name,
            email=customer.email,
            address=customer.address,
            created_at=customer.created_at.replace(tzinfo=None),
        )
    )


async def get_customer(conn: AsyncConnection, customer_id: uuid.UUID) -> Customer | None:
    row = (await conn.execute(select(customers).where(customers.c.id == customer_id))).first()
    return None if row is None else _customer(row)


async def customer_exists(conn: AsyncConnection, customer_id: uuid.UUID) -> bool:
    query = select(customers.c.id).where(customers.c.id == customer_id)
    return (await conn.scalar(query)) is not None


async def add_bookings(conn: AsyncConnection, new: Sequence[Booking]) -> None:
    """Insert ``new`` bookings with one multi-row statement."""
    rows = []
    for booking in new:
        created = booking.created_at.replace(tzinfo=None)
        rows.append(
            {
                "id": booking.id,
                "customer_id": booking.customer_id,
                "event_id": booking.event_id,
                "ticket_count": booking.ticket_count,
                "unit_price": Decimal(booking.unit_price),
                "total_price": Decimal(booking.total_price),
                "status": booking.status.value,
                "created_at": created,
                "updated_at": created,
            }
        )
    await conn.execute(insert(bookings), rows)


async def get_booking(
    conn: AsyncConnection, booking_id: uuid.UUID, *, for_update: bool = False
) -> Booking | None:
    query = select(bookings).where(bookings.c.id == booking_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _booking(row)


async def list_bookings(
    conn: AsyncConnection, customer_id: uuid.UUID, *, limit: int, after: uuid.UUID | None
) -> list[Booking]:
    query = (
        select(bookings)
        .where(bookings.c.customer_id == customer_id)
        .order_by(bookings.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(bookings.c.id > after)
    return [_booking(row) for row in await conn.execute(query)]


@dataclass(frozen=True, slots=True)
class Outcome:
    booking_id: uuid.UUID
    status: BookingStatus
    order_id: uuid.UUID | None
    reason: str | None


async def set_outcomes(conn: AsyncConnection, outcomes: Sequence[Outcome]) -> int:
    """Move PENDING bookings to their final status with one statement (at most one outcome per
    booking); the number of bookings moved (those not PENDING are left alone)."""
    if not outcomes:
        return 0
    by_id = bookings.c.id
    order_ids = {o.booking_id: o.order_id for o in outcomes if o.order_id is not None}
    reasons = {o.booking_id: o.reason for o in outcomes if o.reason is not None}
    result = await conn.execute(
        update(bookings)
        .where(
            by_id.in_([o.booking_id for o in outcomes]),
            bookings.c.status == BookingStatus.PENDING.value,
        )
        .values(
            status=case({o.booking_id: o.status.value for o in outcomes}, value=by_id),
            order_id=case(order_ids, value=by_id, else_=null()) if order_ids else null(),
            reason=case(reasons, value=by_id, else_=null()) if reasons else null(),
            updated_at=utcnow(),
        )
    )
    return int(result.rowcount)


# Idempotency keys ------------------------------------------------------------------------


async def claim_key(conn: AsyncConnection, key: str, fingerprint: str) -> bool:
    """Insert the key as in flight; False when it already exists."""
    result = await conn.execute(
        insert(idempotency_keys)
        .prefix_with("IGNORE")
        .values(idem_key=key, fingerprint=fingerprint, created_at=utcnow())
    )
    return result.rowcount == 1


async def get_key(conn: AsyncConnection, key: str) -> Any:
    query = select(idempotency_keys).where(idempotency_keys.c.idem_key == key)
    return (await conn.execute(query)).first()


async def take_over_key(conn: AsyncConnection, key: str, claimed_at: datetime) -> bool:
    """Adopt a key whose first request was abandoned (still in flight since ``claimed_at``)."""
    result = await conn.execute(
        update(idempotency_keys)
        .where(
            idempotency_keys.c.idem_key == key,
            idempotency_keys.c.booking_id.is_(None),
            idempotency_keys.c.created_at == claimed_at,
        )
        .values(created_at=utcnow())
    )
    return result.rowcount == 1


async def complete_key(
    conn: AsyncConnection, key: str, booking_id: uuid.UUID, response: str
) -> None:
    await conn.execute(
        update(idempotency_keys)
        .where(idempotency_keys.c.idem_key == key)
        .values(booking_id=booking_id, response=response)
    )


async def release_key(conn: AsyncConnection, key: str) -> None:
    """Forget a key whose request failed, so that the client may retry it."""
    await conn.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.idem_key == key, idempotency_keys.c.booking_id.is_(None)
        )
    )


async def purge_keys(conn: AsyncConnection, older_than: timedelta) -> int:
    result = await conn.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < utcnow() - older_than)
    )
    return int(result.rowcount)
