"""Booking's database adapter: the event store and its projections (customers, bookings), and
the idempotency keys; SQLAlchemy Core statements on one connection."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.booking.domain import (
    BOOKING_STREAM,
    CUSTOMER_STREAM,
    EVENT_TYPES,
    BookingState,
    CustomerRegistered,
    StreamEvent,
    customer_of,
)
from ticketing.booking.tables import bookings, customers, event_store, idempotency_keys
from ticketing.contracts.booking import Booking, BookingStatus, Customer
from ticketing.contracts.events import (
    PUBLICATIONS,
    BookingRequested,
    upcast_booking_requested_v1,
)
from ticketing.shared import sql
from ticketing.shared.clock import naive_utc, utcnow
from ticketing.shared.db import is_duplicate_key
from ticketing.shared.event_codec import EventCodec
from ticketing.shared.eventstore import Cause, EventStore, Pending
from ticketing.shared.unit_of_work import UnitOfWork

STORE = EventStore(
    event_store,
    EventCodec(EVENT_TYPES, {("BookingRequested", 1): upcast_booking_requested_v1}),
    PUBLICATIONS,
)


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
        hold=bool(row.hold),
        expires_at=None if row.expires_at is None else _aware(row.expires_at),
        cancel_requested=bool(row.cancel_requested),
    )


def booking_state(row: Any) -> BookingState:
    """A booking's row as the state its next decision starts from."""
    return BookingState(_booking(row), row.version, row.requested_by)


def customer_row(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "email": customer.email,
        "address": customer.address,
        "created_at": naive_utc(customer.created_at),
    }


async def register_customer(
    uow: UnitOfWork, *, event: CustomerRegistered, cause: Cause
) -> Customer:
    """Record a registration and its projection (a taken email fails on its unique key)."""
    customer = customer_of(event)
    pending = [Pending(customer.id, CUSTOMER_STREAM, 1, event)]
    uow.write(
        sql.insert_row(customers, customer_row(customer)), STORE.append(pending, cause, utcnow())
    )
    return customer


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
    "version",
    "hold",
    "requested_by",
)
_ADD_BOOKINGS = sql.insert_sql(bookings, _BOOKING_COLUMNS)


def add_bookings_statement(new: Sequence[tuple[Booking, str | None]]) -> sql.Statement:
    """Insert ``new`` PENDING bookings (their streams' first event), each with the client that
    requested it, with one multi-row statement, for :func:`ticketing.shared.sql.commit_all`
    (every accepted booking passes here)."""
    rows = []
    for booking, requested_by in new:
        created = naive_utc(booking.created_at)
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
                1,
                booking.hold,
                requested_by,
            )
        )
    return sql.Statement(_ADD_BOOKINGS, rows, rows=True)


@dataclass(frozen=True, slots=True)
class NewBooking:
    """What accepting one booking writes: its row, its BookingRequested event (with the cause
    of its request), its idempotency key's answer (when the request came with a key, which it
    holds). Their time is set when they are written (:meth:`at`), so that a booking's
    ``created_at`` is when its event was recorded: the booking exists ``as_of`` that time."""

    booking: Booking
    requested: BookingRequested
    cause: Cause
    idempotency_key: KeyClaim | None
    answer: list[bytes] = field(default_factory=list)  # the 202's body, once written

    def at(self, now: datetime) -> tuple[Booking, BookingRequested]:
        return (
            msgspec.structs.replace(self.booking, created_at=now),
            dataclasses.replace(self.requested, requested_at=now),
        )


def requested_statement(
    requested: Sequence[tuple[BookingRequested, Cause]], cause: Cause, now: datetime
) -> sql.Statement:
    """Append each BookingRequested (with the cause of its own request) as its booking
    stream's first event; the relay publishes them."""
    pending = [Pending(event.booking_id, BOOKING_STREAM, 1, event, why) for event, why in requested]
    return STORE.append(pending, cause, now)


async def get_booking(conn: AsyncConnection, booking_id: uuid.UUID) -> Booking | None:
    row = (await conn.execute(select(bookings).where(bookings.c.id == booking_id))).first()
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


async def customers_of(
    conn: AsyncConnection, booking_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """The customer of each of ``booking_ids`` that exists."""
    query = select(bookings.c.id, bookings.c.customer_id).where(bookings.c.id.in_(booking_ids))
    return {row.id: row.customer_id for row in await conn.execute(query)}


async def last_position_before(conn: AsyncConnection, before: datetime) -> int:
    """The position of the last event of booking's store recorded before ``before`` (naive
    UTC), 0 if none: one step back along the ``recorded_at`` index (the highest position of
    them all would read every earlier event). Clocks and commits may put a higher position
    earlier: the feed then starts a little further back, which only reads a little more."""
    query = (
        select(event_store.c.position)
        .where(event_store.c.recorded_at < before)
        .order_by(event_store.c.recorded_at.desc())
        .limit(1)
    )
    return int(await conn.scalar(query) or 0)


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


@dataclass(frozen=True, slots=True)
class Change:
    """What one decision made of a booking's locked row: the events it appends after
    ``after_version`` (with the cause of the message or request that brought them), and the
    state they lead to, which the projection row becomes."""

    events: Sequence[StreamEvent]
    cause: Cause
    after_version: int
    state: BookingState


# How a use case decides changes from the bookings' locked states, at a time (aware).
DecideChanges = Callable[[Mapping[uuid.UUID, BookingState], datetime], Sequence[Change]]
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


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An Idempotency-Key as stored, whoever holds it: the body it is bound to, and the answer
    given (none while its request is in flight)."""

    fingerprint: str
    booking_id: uuid.UUID | None
    response: str | None
    claimed_at: datetime  # aware: when the request holding it claimed it


async def get_key(conn: AsyncConnection, claim: KeyClaim) -> Any:
    """The client's row of the key ``claim`` names, whoever holds it."""
    return (await conn.execute(select(idempotency_keys).where(_named_by(claim)))).first()


def stored_key(row: Any) -> StoredKey:
    return StoredKey(row.fingerprint, row.booking_id, row.response, _aware(row.created_at))


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
