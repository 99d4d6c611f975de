"""Booking's request use case: a booking accepted at once (202) as PENDING with its
BookingRequested event, and a retry with the same Idempotency-Key answered as the first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from ticketing.booking import domain
from ticketing.booking.domain import KeyInFlight, KeyTakenOver
from ticketing.booking.idempotency import KeyClaim, StoredKey
from ticketing.booking.ports import BookingRecords, EventLookup
from ticketing.booking.repository import NewBooking
from ticketing.contracts.booking import Booking, BookingCreate, BookingStatus
from ticketing.contracts.events import BookingRequested
from ticketing.shared.errors import NotFound, Unprocessable
from ticketing.shared.ids import new_id
from ticketing.shared.store.eventstore import Cause

MAX_KNOWN_CUSTOMERS = 100_000
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to a booking request: the JSON body to send, and whether it is a replay."""

    booking_id: uuid.UUID
    body: bytes
    replayed: bool


class BookingRequests:
    """Accepts booking requests: checks them, prices them at the event's price, and records
    each with its idempotency key's answer."""

    def __init__(
        self,
        records: BookingRecords,
        inventory: EventLookup,
        *,
        max_tickets: int,
        abandoned_after: timedelta,
    ) -> None:
        self._records = records
        self._inventory = inventory
        self._max_tickets = max_tickets
        self._abandoned_after = abandoned_after
        # Customers are never deleted, so one that existed once still does: remembering them
        # saves a query per booking (the foreign key on bookings stays the final guard).
        self._known_customers: set[uuid.UUID] = set()

    async def request_booking(
        self,
        data: BookingCreate,
        *,
        raw_body: bytes,
        cause: Cause,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Accept a booking: the PENDING row and its BookingRequested event in one transaction.

        ``cause.actor`` is the caller's client (the token's azp): an ``idempotency_key`` is that
        client's own.
        """
        claim = None
        if idempotency_key is not None:
            claim = KeyClaim.new(cause.actor, idempotency_key)
            replay = await self._claim_key(claim, domain.fingerprint(raw_body))
            if replay is not None:
                return replay
        try:
            return await self._accept(data, claim, cause)
        except BaseException:
            if claim is not None:
                await self._records.release_key(claim)
            raise

    async def purge_idempotency_keys(self, older_than: timedelta) -> int:
        return await self._records.purge_keys(older_than)

    async def _accept(self, data: BookingCreate, claim: KeyClaim | None, cause: Cause) -> Accepted:
        domain.check_ticket_count(data.ticket_count, self._max_tickets)
        await self._check_customer(data.customer_id)
        event = await self._inventory.get_event(data.event_id, correlation_id=cause.correlation_id)
        domain.check_visible_capacity(event.left_capacity, data.ticket_count)

        now = datetime.now(UTC)
        booking = Booking(
            id=new_id(),
            status=BookingStatus.PENDING,
            customer_id=data.customer_id,
            event_id=data.event_id,
            ticket_count=data.ticket_count,
            unit_price=event.ticket_price,
            total_price=domain.total_price(event.ticket_price, data.ticket_count),
            created_at=now,
            hold=data.hold,
        )
        requested = BookingRequested(
            message_id=new_id(),
            booking_id=booking.id,
            customer_id=booking.customer_id,
            event_id=booking.event_id,
            ticket_count=booking.ticket_count,
            unit_price=booking.unit_price,
            total_price=booking.total_price,
            requested_at=now,
            hold=data.hold,
            requested_by=cause.actor,
        )
        # Concurrent bookings share one transaction (the SQL records' group commit); this
        # returns once the booking, its event and its idempotency key are committed.
        try:
            body = await self._records.add_booking(NewBooking(booking, requested, cause, claim))
        except KeyTakenOver:
            log.warning("booking not written: a retry took its idempotency key over")
            raise
        log.info("booking accepted", booking_id=str(booking.id), event_id=str(booking.event_id))
        return Accepted(booking_id=booking.id, body=body, replayed=False)

    async def _check_customer(self, customer_id: uuid.UUID) -> None:
        if customer_id in self._known_customers:
            return
        if not await self._records.customer_exists(customer_id):
            raise NotFound(f"customer {customer_id} does not exist")
        if len(self._known_customers) >= MAX_KNOWN_CUSTOMERS:
            self._known_customers.clear()
        self._known_customers.add(customer_id)

    async def _claim_key(self, claim: KeyClaim, fingerprint: str) -> Accepted | None:
        """None when this request holds the key now; the first answer when it was given."""

        def abandoned(key: StoredKey) -> bool:
            # Only a request in flight with this very body is taken over, once it is old.
            return (
                key.fingerprint == fingerprint
                and key.booking_id is None
                and key.claimed_at < datetime.now(UTC) - self._abandoned_after
            )

        key = await self._records.claim_key(claim, fingerprint, abandoned)
        if key is None:
            return None
        replay = _replay(key, fingerprint)
        if replay is None:
            raise KeyInFlight
        return replay


def _replay(key: StoredKey, fingerprint: str) -> Accepted | None:
    """The first answer given for a key, None while its request is in flight."""
    if key.fingerprint != fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was used with a different request body; "
            "use a new key for a new request"
        )
    if key.booking_id is None or key.response is None:
        return None
    return Accepted(key.booking_id, key.response.encode(), replayed=True)
