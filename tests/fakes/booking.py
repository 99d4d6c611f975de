"""Booking's records and its read of inventory, in memory."""

from __future__ import annotations

import dataclasses
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import msgspec

from ticketing.booking import domain
from ticketing.booking.changes import Change, DecideChanges
from ticketing.booking.domain import BOOKING_STREAM, CUSTOMER_STREAM, BookingState, KeyTakenOver
from ticketing.booking.idempotency import KeyClaim, StoredKey
from ticketing.booking.ports import SettleBookings
from ticketing.booking.repository import NewBooking
from ticketing.contracts.booking import Booking, BookingStatus, Customer
from ticketing.contracts.events import PUBLICATIONS
from ticketing.contracts.history import HistoryEntry
from ticketing.contracts.inventory import Event, Venue
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.errors import NotFound, Unavailable
from ticketing.shared.http.history import history_entry
from ticketing.shared.http.pagination import decode_version_cursor, encode_version_cursor
from ticketing.shared.store.eventstore import Cause, Pending, Recorded

_BEYOND_BMP = "\U0010ffff"  # the collation weighs every character past U+FFFF alike


def _collated(email: str) -> str:
    """An email as the column's collation (utf8mb4_unicode_ci) compares it, near enough: case,
    accents, compatibility forms, ignorable characters and trailing spaces ignored."""
    weighed = "".join(_BEYOND_BMP if ord(c) > 0xFFFF else c for c in email)
    kept = (
        c
        for c in unicodedata.normalize("NFKD", weighed)
        if not unicodedata.combining(c) and unicodedata.category(c) not in ("Cc", "Cf")
    )
    return "".join(kept).casefold().rstrip(" ")


class InMemoryBookingRecords:
    """Booking's records: the event store (each event with its cause), the ``customers`` and
    ``bookings`` projections, the inbox and the idempotency keys, each write checked against
    the database's keys (an email, a stream's version, a message, a client's key, a booking's
    customer) before anything of it is kept."""

    def __init__(self) -> None:
        self.events: list[Recorded] = []
        self.customers: dict[uuid.UUID, Customer] = {}
        self.bookings: dict[uuid.UUID, BookingState] = {}
        self.claimed: set[uuid.UUID] = set()
        # (client, key) -> (the token of the request holding it, the key as stored)
        self.keys: dict[tuple[str, str], tuple[str, StoredKey]] = {}
        self.customer_lookups = 0

    # Test helpers ------------------------------------------------------------------------

    def stream_of(self, stream_id: uuid.UUID) -> list[Recorded]:
        return sorted((r for r in self.events if r.stream_id == stream_id), key=lambda r: r.version)

    def age_keys(self, by: timedelta) -> None:
        """Move every key's claim ``by`` into the past, as if its request had been slow."""
        for name, (token, key) in self.keys.items():
            self.keys[name] = (token, dataclasses.replace(key, claimed_at=key.claimed_at - by))

    def _taken(self, stream_id: uuid.UUID, version: int) -> bool:
        return any(r.stream_id == stream_id and r.version == version for r in self.events)

    def _append(self, pending: Pending, now: datetime) -> None:
        event, cause = pending.event, pending.cause
        assert cause is not None
        published = type(event).__name__ in PUBLICATIONS
        self.events.append(
            Recorded(
                position=len(self.events) + 1,
                event_id=event.message_id if published else uuid.uuid4(),
                stream_id=pending.stream_id,
                stream_type=pending.stream_type,
                version=pending.version,
                event_type=type(event).__name__,
                event=event,
                actor=cause.actor,
                correlation_id=cause.correlation_id,
                causation_id=cause.causation_id,
                recorded_at=now,
            )
        )

    # Customers ---------------------------------------------------------------------------

    async def register_customer(self, event: domain.CustomerRegistered, cause: Cause) -> Customer:
        customer = domain.customer_of(event)
        email = _collated(customer.email)
        if customer.id in self.customers or any(
            _collated(c.email) == email for c in self.customers.values()
        ):
            raise AlreadyRecorded(f"customer {customer.id} or email {customer.email}")
        self.customers[customer.id] = customer
        self._append(Pending(customer.id, CUSTOMER_STREAM, 1, event, cause), datetime.now(UTC))
        return customer

    async def get_customer(self, customer_id: uuid.UUID) -> Customer | None:
        return self.customers.get(customer_id)

    async def customer_exists(self, customer_id: uuid.UUID) -> bool:
        self.customer_lookups += 1
        return customer_id in self.customers

    # Idempotency keys ------------------------------------------------------------------------

    async def claim_key(
        self, claim: KeyClaim, fingerprint: str, take_over: Callable[[StoredKey], bool]
    ) -> StoredKey | None:
        name = (claim.client, claim.key)
        held = self.keys.get(name)
        now = datetime.now(UTC)
        if held is None:
            self.keys[name] = (claim.token, StoredKey(fingerprint, None, None, now))
            return None
        _, key = held
        if key.booking_id is None and take_over(key):
            self.keys[name] = (claim.token, dataclasses.replace(key, claimed_at=now))
            return None
        return key

    async def release_key(self, claim: KeyClaim) -> None:
        name = (claim.client, claim.key)
        held = self.keys.get(name)
        if held is not None and held[0] == claim.token and held[1].booking_id is None:
            del self.keys[name]

    async def purge_keys(self, older_than: timedelta) -> int:
        before = datetime.now(UTC) - older_than
        old = [name for name, (_, key) in self.keys.items() if key.claimed_at < before]
        for name in old:
            del self.keys[name]
        return len(old)

    # Bookings ------------------------------------------------------------------------------

    async def add_booking(self, new: NewBooking) -> bytes:
        now = datetime.now(UTC)
        booking, requested = new.at(now)
        body = msgspec.json.encode(booking)
        claim = new.idempotency_key
        if claim is not None:
            held = self.keys.get((claim.client, claim.key))
            if held is None or held[0] != claim.token or held[1].booking_id is not None:
                raise KeyTakenOver
        if booking.customer_id not in self.customers:
            raise LookupError(f"the bookings' foreign key: no customer {booking.customer_id}")
        if booking.id in self.bookings or self._taken(booking.id, 1):
            raise AlreadyRecorded(f"booking {booking.id}")
        if claim is not None:
            name = (claim.client, claim.key)
            answered = dataclasses.replace(
                self.keys[name][1], booking_id=booking.id, response=body.decode()
            )
            self.keys[name] = (claim.token, answered)
        self.bookings[booking.id] = BookingState(booking, 1, requested.requested_by)
        self._append(Pending(booking.id, BOOKING_STREAM, 1, requested, new.cause), now)
        new.answer[:] = [body]
        return body

    async def settle(self, batch: SettleBookings) -> None:
        taken = set(batch.message_ids) & self.claimed
        if taken or len(set(batch.message_ids)) < len(batch.message_ids):
            raise AlreadyRecorded(f"claimed {taken}")
        self._record(self._locked(batch.booking_ids), batch.decide_at, claim=batch.message_ids)

    async def change(self, booking_ids: Sequence[uuid.UUID], decide_at: DecideChanges) -> None:
        self._record(self._locked(booking_ids), decide_at)

    async def expire(self, limit: int, decide_at: DecideChanges) -> None:
        now = datetime.now(UTC)
        due = sorted(
            (
                s
                for s in self.bookings.values()
                if s.booking.status is BookingStatus.HELD
                and s.booking.expires_at is not None
                and s.booking.expires_at <= now
            ),
            key=lambda s: s.booking.expires_at or now,
        )[:limit]
        self._record({s.booking.id: s for s in due}, decide_at, now=now)

    def _locked(self, booking_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, BookingState]:
        return {i: self.bookings[i] for i in sorted(set(booking_ids)) if i in self.bookings}

    def _record(
        self,
        locked: dict[uuid.UUID, BookingState],
        decide_at: DecideChanges,
        *,
        claim: Sequence[uuid.UUID] = (),
        now: datetime | None = None,
    ) -> None:
        """Decide on the locked states and keep what was decided, checked as the database
        checks it (one change per booking, from its current version, each version once)."""
        now = now or datetime.now(UTC)
        changes: Sequence[Change] = decide_at(locked, now)
        versions = [
            (c.state.booking.id, c.after_version + n)
            for c in changes
            for n in range(1, len(c.events) + 1)
        ]
        stale = [c for c in changes if self.bookings[c.state.booking.id].version != c.after_version]
        if stale or len(set(versions)) < len(versions) or any(self._taken(*v) for v in versions):
            raise AlreadyRecorded(f"versions {versions}")
        self.claimed.update(claim)
        for change in changes:
            booking_id = change.state.booking.id
            for n, event in enumerate(change.events, start=1):
                pending = Pending(booking_id, BOOKING_STREAM, change.after_version + n, event)
                self._append(dataclasses.replace(pending, cause=change.cause), now)
            # The row takes the columns a change sets from its state, as the SQL update does.
            old, new = self.bookings[booking_id], change.state
            row = msgspec.structs.replace(
                old.booking,
                status=new.booking.status,
                order_id=new.booking.order_id,
                reason=new.booking.reason,
                expires_at=new.booking.expires_at,
                cancel_requested=new.booking.cancel_requested,
            )
            self.bookings[booking_id] = BookingState(row, new.version, old.requested_by)

    async def has_seen(self, message_id: uuid.UUID) -> bool:
        return message_id in self.claimed

    async def get_booking(self, booking_id: uuid.UUID) -> Booking | None:
        state = self.bookings.get(booking_id)
        return None if state is None else state.booking

    async def list_bookings(
        self, customer_id: uuid.UUID, *, limit: int, after: uuid.UUID | None
    ) -> list[Booking]:
        mine = sorted(
            (s.booking for s in self.bookings.values() if s.booking.customer_id == customer_id),
            key=lambda booking: booking.id,
        )
        return [b for b in mine if after is None or b.id > after][:limit]

    async def stream(self, stream_id: uuid.UUID, *, until: datetime) -> list[Recorded]:
        return [r for r in self.stream_of(stream_id) if r.recorded_at <= until]

    async def history(
        self, stream_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[list[HistoryEntry], str | None]:
        after = 0 if cursor is None else decode_version_cursor(cursor)
        recorded = [r for r in self.stream_of(stream_id) if r.version > after][: limit + 1]
        more = len(recorded) > limit
        items = [history_entry(r) for r in recorded[:limit]]
        return items, encode_version_cursor(recorded[limit - 1].version) if more else None


class InMemoryEvents:
    """Inventory's events as booking reads them; ``down`` makes a read fail as an unreachable
    inventory's does, and ``before_read`` runs once ahead of the next read (a test's way into a
    request that is in flight)."""

    def __init__(self) -> None:
        self.events: dict[uuid.UUID, Event] = {}
        self.down = False
        self.reads: list[str | None] = []  # each read's correlation id
        self.before_read: Callable[[], Awaitable[None]] | None = None

    def schedule(self, left_capacity: int, price: str = "25.00") -> uuid.UUID:
        venue = Venue(uuid.uuid4(), "Hall", "1 Road", left_capacity)
        event = Event(uuid.uuid4(), "Show", venue, left_capacity, left_capacity, price, None)
        self.events[event.id] = event
        return event.id

    async def get_event(self, event_id: uuid.UUID, *, correlation_id: str | None = None) -> Event:
        self.reads.append(correlation_id)
        hook, self.before_read = self.before_read, None
        if hook is not None:
            await hook()
        if self.down:
            raise Unavailable("inventory is unreachable")
        event = self.events.get(event_id)
        if event is None:
            raise NotFound(f"event {event_id} does not exist")
        return event
