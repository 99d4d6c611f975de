"""Booking's service layer: customers, bookings and the outcome of the order saga."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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
from ticketing.shared import sql
from ticketing.shared.consumer import Received
from ticketing.shared.db import is_duplicate_key, run_transaction
from ticketing.shared.errors import Conflict, NotFound, Unprocessable
from ticketing.shared.group_commit import GroupCommit
from ticketing.shared.ids import new_id
from ticketing.shared.pagination import decode_cursor, page

CONSUMER = "booking-service"
MAX_KNOWN_CUSTOMERS = 100_000
log = structlog.get_logger(__name__)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class NewBooking:
    """What accepting one booking writes: its row, its outbox event, its idempotency key's
    answer (when the request came with a key, which it holds)."""

    booking: Booking
    outbox_row: dict[str, Any]
    idempotency_key: repo.KeyClaim | None
    response: str


class KeyTakenOver(Conflict):
    """A retry took the request's Idempotency-Key over while the request was in flight."""

    def __init__(self) -> None:
        super().__init__(
            "a retry with this Idempotency-Key took it over while this request was in flight "
            "(after TICKETING_IDEMPOTENCY_INFLIGHT_SECONDS), so this request made no booking; "
            "repeat it with the same key for the answer to the retry",
            retry_after=1,
        )


async def write_bookings(conn: AsyncConnection, new: Sequence[NewBooking]) -> None:
    """Write and commit accepted bookings, their BookingRequested events and their idempotency
    keys' answers.

    The answers go first, each only where its request still holds its key, and their count is
    checked before the bookings and the ``COMMIT`` are sent (``sql.commit_all``, one round trip):
    if a retry took a key over, :class:`KeyTakenOver` leaves the transaction uncommitted, and
    :class:`GroupCommit` writes the items of a group one by one, so that only that request fails.
    """
    answers = [
        repo.Completion(item.idempotency_key, item.booking.id, item.response)
        for item in new
        if item.idempotency_key is not None
    ]
    if answers and await sql.run(conn, repo.complete_keys_statement(answers)) != len(answers):
        raise KeyTakenOver
    statements = [
        repo.add_bookings_statement([item.booking for item in new]),
        outbox_ops.append_statement(outbox, [item.outbox_row for item in new]),
    ]
    await sql.commit_all(conn, statements)


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
        max_group: int = 100,
    ) -> None:
        self._engine = engine
        self._abandoned_after = abandoned_after
        self._inventory = inventory
        self._max_tickets = max_tickets
        # Customers are never deleted, so one that existed once still does: remembering them
        # saves a query per booking (the foreign key on bookings stays the final guard).
        self._known_customers: set[uuid.UUID] = set()
        self._writer = GroupCommit(
            engine,
            write_bookings,
            max_batch=max_group,
            after_commit=after_commit,
            commits_itself=True,
        )

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
            if is_duplicate_key(error):
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
        client_id: str,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Accepted:
        """Accept a booking: the PENDING row and its BookingRequested event in one transaction.

        ``client_id`` is the caller's client (the token's azp): an ``idempotency_key`` is that
        client's own.
        """
        claim = None
        if idempotency_key is not None:
            claim = repo.KeyClaim.new(client_id, idempotency_key)
            replay = await self._claim_key(claim, domain.fingerprint(raw_body))
            if replay is not None:
                return replay
        try:
            return await self._accept(data, claim, correlation_id)
        except BaseException:
            if claim is not None:
                await run_transaction(self._engine, lambda conn: repo.release_key(conn, claim))
            raise

    async def _accept(
        self,
        data: BookingCreate,
        claim: repo.KeyClaim | None,
        correlation_id: str | None,
    ) -> Accepted:
        domain.check_ticket_count(data.ticket_count, self._max_tickets)
        await self._check_customer(data.customer_id)
        event = await self._inventory.get_event(data.event_id, correlation_id=correlation_id)
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
        outbox_row = outbox_ops.build_row(
            requested,
            topic=BOOKINGS_TOPIC,
            key=str(booking.event_id),
            aggregate_type="booking",
            aggregate_id=str(booking.id),
            correlation_id=correlation_id,
        )
        # Concurrent bookings share one transaction (see GroupCommit); this returns once the
        # booking, its event and its idempotency key are committed.
        try:
            await self._writer.write(NewBooking(booking, outbox_row, claim, body.decode()))
        except KeyTakenOver:
            log.warning("booking not written: a retry took its idempotency key over")
            raise
        log.info("booking accepted", booking_id=str(booking.id), event_id=str(booking.event_id))
        return Accepted(booking_id=booking.id, body=body, replayed=False)

    async def _check_customer(self, customer_id: uuid.UUID) -> None:
        if customer_id in self._known_customers:
            return
        async with self._engine.connect() as conn:
            if not await repo.customer_exists(conn, customer_id):
                raise NotFound(f"customer {customer_id} does not exist")
        if len(self._known_customers) >= MAX_KNOWN_CUSTOMERS:
            self._known_customers.clear()
        self._known_customers.add(customer_id)

    async def _claim_key(self, claim: repo.KeyClaim, fingerprint: str) -> Accepted | None:
        """None when this request holds the key now; the first answer when it was given.

        Retried whole on a deadlock: two retries that find the key taken hold shared locks on
        its row (from their failed inserts), and when both try to take it over one is killed.
        """

        async def work(conn: AsyncConnection) -> Accepted | None:
            if await repo.claim_key(conn, claim, fingerprint):
                return None
            row = await repo.get_key(conn, claim)
            if row is None:  # purged between the two statements: claim it again
                if await repo.claim_key(conn, claim, fingerprint):
                    return None
            else:
                replay = _replay(row, fingerprint)
                if replay is not None:
                    return replay
                claimed_at = row.created_at.replace(tzinfo=UTC)
                abandoned = claimed_at < datetime.now(UTC) - self._abandoned_after
                if abandoned:
                    if await repo.take_over_key(conn, claim, row.claim):
                        return None
                    # Answered (or released) while we looked: read it again (READ COMMITTED)
                    # and replay an answer rather than call it in flight.
                    row = await repo.get_key(conn, claim)
                    replay = None if row is None else _replay(row, fingerprint)
                    if replay is not None:
                        return replay
            raise Conflict(
                "a request with this Idempotency-Key is still being processed; retry shortly",
                retry_after=1,
            )

        return await run_transaction(self._engine, work)

    async def purge_idempotency_keys(self, older_than: timedelta) -> int:
        return await run_transaction(self._engine, lambda c: repo.purge_keys(c, older_than))

    # Saga outcome ------------------------------------------------------------------------

    async def apply_outcome(self, event: OrderConfirmed | OrderRejected) -> bool:
        """Settle the booking once per message; False when the message was already applied."""
        outcome = _outcome(event)

        async def work(conn: AsyncConnection) -> bool:
            if not await inbox_ops.claim(conn, inbox, CONSUMER, event.message_id):
                return False
            if not await repo.set_outcomes(conn, [outcome]):
                log.warning(
                    "outcome ignored: booking missing or already final",
                    booking_id=str(event.booking_id),
                    outcome=outcome.status.value,
                )
            return True

        return await run_transaction(self._engine, work)

    async def apply_outcomes(self, received: Sequence[Received]) -> None:
        """Settle a batch of outcomes in one transaction, each message at most once.

        The common case (no message of the batch was applied before) costs one transaction. If
        one was (a redelivery, or another consumer got there first), the inbox insert fails on
        its key, nothing of the batch is applied, and each message goes through
        :meth:`apply_outcome`, which skips the ones applied already.
        """
        events: dict[uuid.UUID, OrderConfirmed | OrderRejected] = {}
        for item in received:
            events.setdefault(item.event.message_id, item.event)
        outcomes: dict[uuid.UUID, repo.Outcome] = {}
        for event in events.values():
            outcomes.setdefault(event.booking_id, _outcome(event))

        async def work(conn: AsyncConnection) -> int:
            _, changed = await sql.commit_all(
                conn,
                [
                    inbox_ops.claim_all_statement(inbox, CONSUMER, list(events)),
                    repo.set_outcomes_statement(list(outcomes.values())),
                ],
            )
            return changed

        try:
            changed = await run_transaction(self._engine, work, commits_itself=True)
        except IntegrityError as error:
            if not is_duplicate_key(error):
                raise
            log.info("batch holds messages applied before; applying one by one")
            for event in events.values():
                await self.apply_outcome(event)
            return
        if changed < len(outcomes):
            log.warning(
                "outcomes ignored: bookings missing or already final",
                count=len(outcomes) - changed,
            )


def _replay(row: Any, fingerprint: str) -> Accepted | None:
    """The first answer given for a key's row, None while its request is in flight."""
    if row.fingerprint != fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was used with a different request body; "
            "use a new key for a new request"
        )
    if row.booking_id is None:
        return None
    return Accepted(row.booking_id, row.response.encode(), replayed=True)


def _outcome(event: OrderConfirmed | OrderRejected) -> repo.Outcome:
    if isinstance(event, OrderConfirmed):
        return repo.Outcome(event.booking_id, BookingStatus.CONFIRMED, event.order_id, None)
    return repo.Outcome(event.booking_id, BookingStatus.REJECTED, None, event.reason)
