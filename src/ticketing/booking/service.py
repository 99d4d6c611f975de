"""Booking's service layer: customers, bookings and the outcome of the order saga."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.booking import domain
from ticketing.booking import repository as repo
from ticketing.booking.inventory_client import InventoryClient
from ticketing.booking.tables import inbox, outbox
from ticketing.contracts.booking import (
    Booking,
    BookingCreate,
    BookingPage,
    BookingStatus,
    Customer,
    CustomerCreate,
)
from ticketing.contracts.events import (
    BOOKINGS_TOPIC,
    BookingRequested,
    OrderConfirmed,
    OrderRejected,
)
from ticketing.shared import inbox as inbox_ops
from ticketing.shared import outbox as outbox_ops
from ticketing.shared.db import mysql_error_code, run_transaction
from ticketing.shared.errors import Conflict, NotFound, Unprocessable
from ticketing.shared.ids import new_id
from ticketing.shared.pagination import decode_cursor, page

CONSUMER = "booking-service"
DUPLICATE_KEY = 1062
log = structlog.get_logger(__name__)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to a booking request: the JSON body to send, and whether it is a replay."""

    booking_id: uuid.UUID
    body: bytes
    replayed: bool


class BookingService:
    def __init__(
        self,
        engine: AsyncEngine,
        inventory: InventoryClient,
        *,
        max_tickets: int,
        after_commit: Callable[[], None] = lambda: None,
        abandoned_after: timedelta = timedelta(seconds=30),
    ) -> None:
        self._engine = engine
        self._abandoned_after = abandoned_after
        self._inventory = inventory
        self._max_tickets = max_tickets
        self._after_commit = after_commit

    # Customers -------------------------------------------------------------------------

    async def create_customer(self, data: CustomerCreate) -> Customer:
        customer = Customer(
            id=new_id(),
            name=data.name,
            email=data.email,
            address=data.address,
            created_at=datetime.now(UTC),
        )

        async def work(conn: AsyncConnection) -> None:
            await repo.add_customer(conn, customer)

        try:
            await run_transaction(self._engine, work)
        except IntegrityError as error:
            if mysql_error_code(error) == DUPLICATE_KEY:
                raise Conflict(f"a customer with email {data.email} already exists") from None
            raise
        return customer

    async def get_customer(self, customer_id: uuid.UUID) -> Customer:
        async with self._engine.connect() as conn:
            customer = await repo.get_customer(conn, customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} does not exist")
        return customer

    async def list_bookings(
        self, customer_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> BookingPage:
        after = None if cursor is None else decode_cursor(cursor)
        async with self._engine.connect() as conn:
            if not await repo.customer_exists(conn, customer_id):
                raise NotFound(f"customer {customer_id} does not exist")
            items = await repo.list_bookings(conn, customer_id, limit=limit + 1, after=after)
        return BookingPage(*page(items, limit))

    # Bookings --------------------------------------------------------------------------

    async def get_booking(self, booking_id: uuid.UUID) -> Booking:
        async with self._engine.connect() as conn:
            booking = await repo.get_booking(conn, booking_id)
        if booking is None:
            raise NotFound(f"booking {booking_id} does not exist")
        return booking

    async def request_booking(
        self,
        data: BookingCreate,
        *,
        raw_body: bytes,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        authorization: str | None = None,
    ) -> Accepted:
        """Accept a booking: the PENDING row and its BookingRequested event in one transaction.

        ``authorization`` is the caller's own token, relayed to inventory to read the event.
        """
        if idempotency_key is not None:
            replay = await self._claim_key(idempotency_key, domain.fingerprint(raw_body))
            if replay is not None:
                return replay
        try:
            return await self._accept(data, idempotency_key, correlation_id, authorization)
        except BaseException:
            if idempotency_key is not None:
                await run_transaction(
                    self._engine, lambda conn: repo.release_key(conn, idempotency_key)
                )
            raise

    async def _accept(
        self,
        data: BookingCreate,
        idempotency_key: str | None,
        correlation_id: str | None,
        authorization: str | None,
    ) -> Accepted:
        domain.check_ticket_count(data.ticket_count, self._max_tickets)
        async with self._engine.connect() as conn:
            if not await repo.customer_exists(conn, data.customer_id):
                raise NotFound(f"customer {data.customer_id} does not exist")
        event = await self._inventory.get_event(
            data.event_id, correlation_id=correlation_id, authorization=authorization
        )
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
        )
        body = _encoder.encode(booking)

        async def work(conn: AsyncConnection) -> None:
            await repo.add_booking(conn, booking)
            await outbox_ops.append(
                conn,
                outbox,
                requested,
                topic=BOOKINGS_TOPIC,
                key=str(booking.event_id),
                aggregate_type="booking",
                aggregate_id=str(booking.id),
                correlation_id=correlation_id,
            )
            if idempotency_key is not None:
                await repo.complete_key(conn, idempotency_key, booking.id, body.decode())

        await run_transaction(self._engine, work)
        self._after_commit()
        log.info("booking accepted", booking_id=str(booking.id), event_id=str(booking.event_id))
        return Accepted(booking_id=booking.id, body=body, replayed=False)

    async def _claim_key(self, key: str, fingerprint: str) -> Accepted | None:
        """None when this request owns the key now; the first answer when it was given."""
        async with self._engine.begin() as conn:
            if await repo.claim_key(conn, key, fingerprint):
                return None
            row = await repo.get_key(conn, key)
            if row is None:  # purged between the two statements: claim it again
                await repo.claim_key(conn, key, fingerprint)
                return None
            if row.fingerprint != fingerprint:
                raise Unprocessable(
                    "this Idempotency-Key was used with a different request body; "
                    "use a new key for a new request"
                )
            if row.booking_id is not None:
                return Accepted(row.booking_id, row.response.encode(), replayed=True)
            claimed_at = row.created_at
            abandoned = claimed_at.replace(tzinfo=UTC) < datetime.now(UTC) - self._abandoned_after
            if abandoned and await repo.take_over_key(conn, key, claimed_at):
                return None
        raise Conflict(
            "a request with this Idempotency-Key is still being processed; retry shortly",
            retry_after=1,
        )

    async def purge_idempotency_keys(self, older_than: timedelta) -> int:
        return await run_transaction(self._engine, lambda c: repo.purge_keys(c, older_than))

    # Saga outcome ------------------------------------------------------------------------

    async def apply_outcome(self, event: OrderConfirmed | OrderRejected) -> bool:
        """Settle the booking once per message; False when the message was already applied."""
        if isinstance(event, OrderConfirmed):
            status, order_id, reason = BookingStatus.CONFIRMED, event.order_id, None
        else:
            status, order_id, reason = BookingStatus.REJECTED, None, event.reason

        async def work(conn: AsyncConnection) -> bool:
            if not await inbox_ops.claim(conn, inbox, CONSUMER, event.message_id):
                return False
            changed = await repo.set_outcome(
                conn, event.booking_id, status, order_id=order_id, reason=reason
            )
            if not changed:
                log.warning(
                    "outcome ignored: booking missing or already final",
                    booking_id=str(event.booking_id),
                    outcome=status.value,
                )
            return True

        return await run_transaction(self._engine, work)
