"""Booking's database adapter: SQLAlchemy Core statements on one connection."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.booking.tables import bookings, customers, idempotency_keys
from ticketing.contracts.booking import Booking, BookingStatus, Customer
from ticketing.shared import sql
from ticketing.shared.db import is_duplicate_key
from ticketing.shared.clock import utcnow


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


_BOOKING_COLUMNS = (
    "id",
    "customer_id",
    "event_id",
    "ticket_count",
    "unit_price",
    "total_price",
    "status",
    "created_at",
    "updated_at",
)
_ADD_BOOKINGS = sql.insert_sql(bookings, _BOOKING_COLUMNS)


def add_bookings_statement(new: Sequence[Booking]) -> sql.Statement:
    """Insert ``new`` bookings with one multi-row statement, for
    :func:`ticketing.shared.sql.commit_all` (every accepted booking passes here)."""
    rows = []
    for booking in new:
        created = booking.created_at.replace(tzinfo=None)
        rows.append(
            (
                str(booking.id),
                str(booking.customer_id),
                str(booking.event_id),
                booking.ticket_count,
                Decimal(booking.unit_price),
                Decimal(booking.total_price),
                booking.status.value,
                created,
                created,
            )
        )
    return sql.Statement(_ADD_BOOKINGS, rows, rows=True)


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
    booking); the number of bookings moved (those not PENDING are left alone). On the driver's
    cursor: every booking is settled here."""
    if not outcomes:
        return 0
    return await sql.run(conn, set_outcomes_statement(outcomes))


def set_outcomes_statement(outcomes: Sequence[Outcome]) -> sql.Statement:
    """The statement of :func:`set_outcomes` (``outcomes`` not empty), for
    :func:`ticketing.shared.sql.commit_all`."""
    ids = [str(o.booking_id) for o in outcomes]
    whens = " ".join(["WHEN %s THEN %s"] * len(outcomes))
    new_values: list[list[Any]] = [
        [o.status.value for o in outcomes],
        [None if o.order_id is None else str(o.order_id) for o in outcomes],
        [o.reason for o in outcomes],
    ]
    params = [p for values in new_values for pair in zip(ids, values, strict=True) for p in pair]
    params += [utcnow(), *ids, BookingStatus.PENDING.value]
    statement = (  # only placeholders are formatted in; every value is a parameter
        "UPDATE bookings SET "  # noqa: S608
        f"status = CASE id {whens} END, "
        f"order_id = CASE id {whens} END, "
        f"reason = CASE id {whens} END, "
        f"updated_at = %s WHERE id IN ({sql.placeholders(len(ids))}) AND status = %s"
    )
    return sql.Statement(statement, params)


# Idempotency keys ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """An Idempotency-Key as one request holds it: the calling client's key, and the token that
    request stored with it when it claimed the key (a retry that takes the key over stores its
    own, so the request it took the key from can tell that it no longer holds it)."""

    client: str  # the SHA-256 of the client id (client_digest)
    key: str
    token: str

    @classmethod
    def new(cls, client_id: str, key: str) -> KeyClaim:
        return cls(client_digest(client_id), key, secrets.token_hex(16))


def client_digest(client_id: str) -> str:
    """How a client is kept with its keys: a fixed-size digest, whatever its id's length."""
    return hashlib.sha256(client_id.encode()).hexdigest()


def _named_by(claim: KeyClaim) -> ColumnElement[bool]:
    """The client's row of the key ``claim`` names (compared byte for byte: the columns are
    binary strings)."""
    return and_(idempotency_keys.c.client == claim.client, idempotency_keys.c.idem_key == claim.key)


async def claim_key(conn: AsyncConnection, claim: KeyClaim, fingerprint: str) -> bool:
    """Insert the key as in flight, held by ``claim``; False when the client has it already.

    A plain ``INSERT`` rather than ``INSERT IGNORE``: IGNORE would also turn a value too long
    for its column into a truncated one, and two clients or keys could then meet.
    """
    try:
        await conn.execute(
            insert(idempotency_keys).values(
                client=claim.client,
                idem_key=claim.key,
                claim=claim.token,
                fingerprint=fingerprint,
                created_at=utcnow(),
            )
        )
    except IntegrityError as error:
        if is_duplicate_key(error):
            return False
        raise
    return True


async def get_key(conn: AsyncConnection, claim: KeyClaim) -> Any:
    """The client's row of the key ``claim`` names, whoever holds it."""
    return (await conn.execute(select(idempotency_keys).where(_named_by(claim)))).first()


async def take_over_key(conn: AsyncConnection, claim: KeyClaim, held_by: str) -> bool:
    """Hand a key whose request was abandoned (still in flight, held by ``held_by``) to
    ``claim``; False when it was completed or taken over meanwhile."""
    result = await conn.execute(
        update(idempotency_keys)
        .where(
            _named_by(claim),
            idempotency_keys.c.claim == held_by,
            idempotency_keys.c.booking_id.is_(None),
        )
        .values(claim=claim.token, created_at=utcnow())
    )
    return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class Completion:
    """The answer a request that holds its key gave: its booking and the JSON sent."""

    claim: KeyClaim
    booking_id: uuid.UUID
    response: str


def complete_keys_statement(completions: Sequence[Completion]) -> sql.Statement:
    """Record the answers of ``completions`` (not empty), each only where its request still
    holds its key: the statement changes fewer rows than ``completions`` when a retry took a
    key over. Run it in the transaction of the bookings, and check its count before the commit.
    """
    tokens = [c.claim.token for c in completions]
    whens = " ".join(["WHEN %s THEN %s"] * len(completions))
    params: list[Any] = []
    for values in ([str(c.booking_id) for c in completions], [c.response for c in completions]):
        params += [p for pair in zip(tokens, values, strict=True) for p in pair]
    for c in completions:
        params += [c.claim.client, c.claim.key, c.claim.token]
    # ORs of equalities, not a row IN list: MariaDB turns a one-row IN into a row comparison
    # that an UPDATE cannot find through the primary key, and scanned the whole table.
    held = " OR ".join(["(client = %s AND idem_key = %s AND claim = %s)"] * len(completions))
    statement = (  # only placeholders are formatted in; every value is a parameter
        "UPDATE idempotency_keys SET "  # noqa: S608
        f"booking_id = CASE claim {whens} END, response = CASE claim {whens} END "
        f"WHERE booking_id IS NULL AND ({held})"
    )
    return sql.Statement(statement, params)


async def release_key(conn: AsyncConnection, claim: KeyClaim) -> None:
    """Forget a key whose request failed, so that the client may retry it (only while this
    request holds it: a retry that took it over keeps it)."""
    await conn.execute(
        delete(idempotency_keys).where(
            _named_by(claim),
            idempotency_keys.c.claim == claim.token,
            idempotency_keys.c.booking_id.is_(None),
        )
    )


async def purge_keys(conn: AsyncConnection, older_than: timedelta) -> int:
    result = await conn.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < utcnow() - older_than)
    )
    return int(result.rowcount)
