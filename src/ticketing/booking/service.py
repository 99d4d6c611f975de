"""Booking's service layer: customers, bookings and the outcome of the order saga, each change
an event in booking's store with its projection (ADR 12)."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.booking import domain
from ticketing.booking import repository as repo
from ticketing.booking.inventory_client import InventoryClient
from ticketing.booking.tables import inbox
from ticketing.contracts.booking import (
    Booking,
    BookingCreate,
    BookingHistoryPage,
    BookingPage,
    BookingStatus,
    Customer,
    CustomerCreate,
)
from ticketing.contracts.events import BookingRequested, OrderConfirmed, OrderRejected
from ticketing.shared import inbox as inbox_ops
from ticketing.shared.clock import naive_utc
from ticketing.shared.consumer import Received
from ticketing.shared.db import is_duplicate_key, run_transaction
from ticketing.shared.errors import Conflict, NotFound, Unprocessable
from ticketing.shared.eventstore import Cause, unbroken
from ticketing.shared.group_commit import GroupCommit
from ticketing.shared.history import history_page
from ticketing.shared.ids import new_id
from ticketing.shared.pagination import decode_cursor, page
from ticketing.shared.unit_of_work import UnitOfWork, in_unit_of_work

CONSUMER = "booking-service"
MAX_KNOWN_CUSTOMERS = 100_000
log = structlog.get_logger(__name__)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class NewBooking:
    """What accepting one booking writes: its row, its BookingRequested event (with the cause
    of its request), its idempotency key's answer (when the request came with a key, which it
    holds). Their time is set when they are written (:meth:`at`), so that a booking's
    ``created_at`` is when its event was recorded: the booking exists ``as_of`` that time."""

    booking: Booking
    requested: BookingRequested
    cause: Cause
    idempotency_key: repo.KeyClaim | None
    answer: list[bytes] = field(default_factory=list)  # the 202's body, once written

    def at(self, now: datetime) -> tuple[Booking, BookingRequested]:
        return (
            msgspec.structs.replace(self.booking, created_at=now),
            dataclasses.replace(self.requested, requested_at=now),
        )


class KeyTakenOver(Conflict):
    """A retry took the request's Idempotency-Key over while the request was in flight."""

    def __init__(self) -> None:
        super().__init__(
            "a retry with this Idempotency-Key took it over while this request was in flight "
            "(after TICKETING_IDEMPOTENCY_INFLIGHT_SECONDS), so this request made no booking; "
            "repeat it with the same key for the answer to the retry",
            retry_after=1,
        )


async def write_bookings(uow: UnitOfWork, new: Sequence[NewBooking]) -> None:
    """Write accepted bookings, their BookingRequested events and their idempotency keys'
    answers, in one unit of work.

    The answers go first, each only where its request still holds its key, and their count is
    checked before the bookings and the ``COMMIT`` are sent (one round trip): if a retry took a
    key over, :class:`KeyTakenOver` leaves the unit uncommitted, and :class:`GroupCommit`
    writes the items of a group one by one, so that only that request fails.
    """
    now = datetime.now(UTC)
    stamped = [item.at(now) for item in new]
    bodies = [_encoder.encode(booking) for booking, _ in stamped]
    answers = [
        repo.Completion(item.idempotency_key, booking.id, body.decode())
        for item, (booking, _), body in zip(new, stamped, bodies, strict=True)
        if item.idempotency_key is not None
    ]
    if answers and await uow.write_now(repo.complete_keys_statement(answers)) != len(answers):
        raise KeyTakenOver
    requested = [(event, item.cause) for item, (_, event) in zip(new, stamped, strict=True)]
    uow.write(
        repo.add_bookings_statement([booking for booking, _ in stamped]),
        repo.requested_statement(requested, new[0].cause, naive_utc(now)),
    )
    for item, body in zip(new, bodies, strict=True):
        item.answer[:] = [body]


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
        )

    # Customers -------------------------------------------------------------------------

    async def create_customer(self, data: CustomerCreate, cause: Cause) -> Customer:
        registered = domain.CustomerRegistered(
            customer_id=new_id(),
            name=data.name,
            email=data.email,
            address=data.address,
            registered_at=datetime.now(UTC),
        )
        try:
            return await in_unit_of_work(
                self._engine,
                functools.partial(repo.register_customer, event=registered, cause=cause),
            )
        except IntegrityError as error:
            if is_duplicate_key(error):
                raise Conflict(f"a customer with email {data.email} already exists") from None
            raise

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

    async def get_booking(self, booking_id: uuid.UUID, *, as_of: datetime | None = None) -> Booking:
        """The booking as it is now (its projection row), or as it was at ``as_of`` (aware)."""
        async with self._engine.connect() as conn:
            if as_of is None:
                booking = await repo.get_booking(conn, booking_id)
            else:
                recorded = unbroken(await repo.STORE.stream(conn, booking_id, until=as_of))
                # The id of another stream (a customer's) names no booking at any time.
                booking = _booking_of(
                    [r.event for r in recorded if r.stream_type == domain.BOOKING_STREAM]
                )
                if booking is None:
                    raise NotFound(f"booking {booking_id} did not exist at {as_of.isoformat()}")
        if booking is None:
            raise NotFound(f"booking {booking_id} does not exist")
        return booking

    async def booking_history(
        self, booking_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> BookingHistoryPage:
        """The events of the booking's stream, oldest first, a page at a time."""
        async with self._engine.connect() as conn:
            if await repo.get_booking(conn, booking_id) is None:
                raise NotFound(f"booking {booking_id} does not exist")
            items, next_cursor = await history_page(conn, repo.STORE, booking_id, limit, cursor)
        return BookingHistoryPage(items=items, next_cursor=next_cursor)

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
            claim = repo.KeyClaim.new(cause.actor, idempotency_key)
            replay = await self._claim_key(claim, domain.fingerprint(raw_body))
            if replay is not None:
                return replay
        try:
            return await self._accept(data, claim, cause)
        except BaseException:
            if claim is not None:
                await run_transaction(self._engine, lambda conn: repo.release_key(conn, claim))
            raise

    async def _accept(
        self,
        data: BookingCreate,
        claim: repo.KeyClaim | None,
        cause: Cause,
    ) -> Accepted:
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
        new = NewBooking(booking, requested, cause, claim)
        # Concurrent bookings share one transaction (see GroupCommit); this returns once the
        # booking, its event and its idempotency key are committed.
        try:
            await self._writer.write(new)
        except KeyTakenOver:
            log.warning("booking not written: a retry took its idempotency key over")
            raise
        log.info("booking accepted", booking_id=str(booking.id), event_id=str(booking.event_id))
        return Accepted(booking_id=booking.id, body=new.answer[0], replayed=False)

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

    async def apply_outcomes(self, received: Sequence[Received]) -> None:
        """Settle the bookings of a batch of outcomes in one transaction, each message once.

        The bookings' rows are locked (one round trip), each outcome decided from its row
        (:func:`~ticketing.booking.domain.decide_settlement`: a booking missing or settled
        already is left as it is), then the inbox claims, the events and the projections go
        with the ``COMMIT`` (one round trip). A message applied before fails the inbox claim
        and nothing of the batch is written: alone, it was simply applied already (the inbox
        says so); in a batch, the error goes to the consumer's runner, which hands each message
        over alone.
        """
        firsts: dict[uuid.UUID, Received] = {}
        for item in received:
            firsts.setdefault(item.event.message_id, item)

        async def work(uow: UnitOfWork) -> int:
            booking_ids = sorted({item.event.booking_id for item in firsts.values()})
            states: dict[uuid.UUID, domain.BookingState] = await repo.lock_bookings(
                uow.conn, booking_ids
            )
            now = datetime.now(UTC)
            settled: list[repo.Settlement] = []
            for item in firsts.values():
                outcome = item.event
                state = states.get(outcome.booking_id)
                event = domain.decide_settlement(state, outcome, now)
                if state is None or event is None:
                    continue
                cause = _cause(outcome, item.correlation_id)
                settled.append(repo.Settlement(event, cause, state.version))
                states[outcome.booking_id] = domain.evolve(state, event)
            uow.write(inbox_ops.claim_all_statement(inbox, CONSUMER, list(firsts)))
            if settled:
                uow.write(*repo.settled_statements(settled, naive_utc(now)))
            return len(firsts) - len(settled)

        try:
            ignored = await in_unit_of_work(self._engine, work)
        except IntegrityError as error:
            alone = next(iter(firsts)) if len(firsts) == 1 else None
            if not is_duplicate_key(error) or alone is None:
                raise
            if not await inbox_ops.seen(self._engine, inbox, CONSUMER, alone):
                raise  # another key (a projection row lagging its stream): never acked
            log.info("outcome applied before", message_id=str(alone))
            return
        if ignored:
            log.warning("outcomes ignored: bookings missing or already final", count=ignored)


def _cause(outcome: OrderConfirmed | OrderRejected, correlation_id: str | None) -> Cause:
    """A settlement's cause: this consumer, acting on the outcome's message."""
    return Cause(CONSUMER).caused_by(str(outcome.message_id), correlation_id)


def _booking_of(events: Sequence[Any]) -> Booking | None:
    """The booking folded from the events of its stream, None before the first."""
    return domain.fold(events).booking if events else None


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
