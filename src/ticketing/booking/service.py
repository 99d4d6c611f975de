"""Booking's service layer: customers, bookings and the outcome of the order saga, each change
an event in booking's store with its projection (ADR 12), recorded through the ports below."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from ticketing.booking import domain, lifecycle
from ticketing.booking import repository as repo
from ticketing.booking.domain import KeyInFlight, KeyTakenOver
from ticketing.booking.ports import BookingRecords, EventLookup, NoOutcomes, Outcomes
from ticketing.contracts.booking import (
    Booking,
    BookingCreate,
    BookingHistoryPage,
    BookingPage,
    BookingStatus,
    Customer,
    CustomerCreate,
)
from ticketing.contracts.events import BOOKING_SUBSCRIPTION, BookingRequested
from ticketing.shared import tally
from ticketing.shared.consumer import Received
from ticketing.shared.errors import Conflict, NotFound, Unprocessable
from ticketing.shared.eventstore import Cause, unbroken
from ticketing.shared.ids import new_id
from ticketing.shared.pagination import decode_cursor, page
from ticketing.shared.unit_of_work import AlreadyRecorded

CONSUMER = BOOKING_SUBSCRIPTION.group
SWEEPER = "booking-hold-expiry"  # the actor of the events the expiry of holds records
EXPIRY_BATCH = 100
MAX_KNOWN_CUSTOMERS = 100_000
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to a booking request: the JSON body to send, and whether it is a replay."""

    booking_id: uuid.UUID
    body: bytes
    replayed: bool


class BookingService:
    def __init__(
        self,
        records: BookingRecords,
        inventory: EventLookup,
        *,
        max_tickets: int,
        abandoned_after: timedelta = timedelta(seconds=30),
        hold_for: timedelta = timedelta(seconds=900),
        outcomes: Outcomes | None = None,
    ) -> None:
        self._records = records
        self._outcomes = outcomes or NoOutcomes()
        self._hold_for = hold_for
        self._abandoned_after = abandoned_after
        self._inventory = inventory
        self._max_tickets = max_tickets
        # Customers are never deleted, so one that existed once still does: remembering them
        # saves a query per booking (the foreign key on bookings stays the final guard).
        self._known_customers: set[uuid.UUID] = set()

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
            return await self._records.register_customer(registered, cause)
        except AlreadyRecorded:
            raise Conflict(f"a customer with email {data.email} already exists") from None

    async def get_customer(self, customer_id: uuid.UUID) -> Customer:
        customer = await self._records.get_customer(customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} does not exist")
        return customer

    async def list_bookings(
        self, customer_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> BookingPage:
        after = None if cursor is None else decode_cursor(cursor)
        if not await self._records.customer_exists(customer_id):
            raise NotFound(f"customer {customer_id} does not exist")
        items = await self._records.list_bookings(customer_id, limit=limit + 1, after=after)
        return BookingPage(*page(items, limit))

    # Bookings --------------------------------------------------------------------------

    async def get_booking(self, booking_id: uuid.UUID, *, as_of: datetime | None = None) -> Booking:
        """The booking as it is now (its projection row), or as it was at ``as_of`` (aware)."""
        if as_of is None:
            booking = await self._records.get_booking(booking_id)
        else:
            recorded = unbroken(await self._records.stream(booking_id, until=as_of))
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
        if await self._records.get_booking(booking_id) is None:
            raise NotFound(f"booking {booking_id} does not exist")
        items, next_cursor = await self._records.history(booking_id, limit=limit, cursor=cursor)
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
                await self._records.release_key(claim)
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
            body = await self._records.add_booking(
                repo.NewBooking(booking, requested, cause, claim)
            )
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

    async def _claim_key(self, claim: repo.KeyClaim, fingerprint: str) -> Accepted | None:
        """None when this request holds the key now; the first answer when it was given."""

        def abandoned(key: repo.StoredKey) -> bool:
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

    async def purge_idempotency_keys(self, older_than: timedelta) -> int:
        return await self._records.purge_keys(older_than)

    # Saga outcome ------------------------------------------------------------------------

    async def apply_outcomes(self, received: Sequence[Received]) -> None:
        """Settle the bookings of a batch of outcomes in one transaction, each message once.

        Each outcome is decided from its booking's locked state
        (:func:`~ticketing.booking.domain.decide_settlement`: a booking missing or settled
        already is left as it is), and recorded with the inbox claims. A message applied before
        fails the inbox claim and nothing of the batch is written: alone, it was simply applied
        already (the inbox says so); in a batch, the error goes to the consumer's runner, which
        hands each message over alone.
        """
        firsts: dict[uuid.UUID, Received] = {}
        for item in received:
            firsts.setdefault(item.event.message_id, item)
        ignored: list[int] = [0]

        def decide_at(
            locked: Mapping[uuid.UUID, domain.BookingState], now: datetime
        ) -> list[repo.Change]:
            states = dict(locked)
            decided: dict[uuid.UUID, list[domain.StreamEvent]] = {}
            causes: dict[uuid.UUID, Cause] = {}
            ignored[0] = 0
            for item in firsts.values():
                answer, booking_id = item.event, item.event.booking_id
                state = states.get(booking_id)
                events = lifecycle.decide_answer(
                    state, answer, now, hold_for=self._hold_for, new_id=new_id
                )
                if state is None or not events:
                    ignored[0] += 1
                    continue
                states[booking_id] = _evolved(state, events)
                decided.setdefault(booking_id, []).extend(events)
                causes.setdefault(booking_id, _cause(answer, item))
            return [
                repo.Change(events, causes[id_], locked[id_].version, states[id_])
                for id_, events in decided.items()
            ]

        booking_ids = [item.event.booking_id for item in firsts.values()]
        committed: list[tuple[Sequence[repo.Change], datetime]] = []
        try:
            await self._records.settle(list(firsts), booking_ids, _noting(decide_at, committed))
        except AlreadyRecorded:
            alone = next(iter(firsts)) if len(firsts) == 1 else None
            if alone is None:
                raise
            if not await self._records.has_seen(alone):
                raise  # another key (a projection row lagging its stream): never acked
            log.info("outcome applied before", message_id=str(alone))
            tally.applied_before()
            return
        for changes, now in committed:
            self._outcomes.committed(changes)
            self._outcomes.settled(changes, now)
        if ignored[0]:
            log.warning("saga answers ignored: bookings missing or past them", count=ignored[0])

    # The lifecycle ----------------------------------------------------------------------

    async def confirm(
        self, booking_id: uuid.UUID, caller: lifecycle.Caller, cause: Cause
    ) -> Booking:
        """Confirm a HELD booking (ADR 17); the booking as it is then."""
        state = await self._change(
            booking_id, lambda s, now: lifecycle.decide_confirm(s, caller, now, new_id), cause
        )
        lifecycle.check_not_expired(state)
        log.info("booking confirmed", booking_id=str(booking_id))
        return state.booking

    async def cancel(
        self, booking_id: uuid.UUID, caller: lifecycle.Caller, cause: Cause
    ) -> Booking:
        """Cancel a booking (ADR 17): its seats go back once inventory released them (or once
        the saga answers, for a PENDING one); the booking as it is then."""
        state = await self._change(
            booking_id, lambda s, now: lifecycle.decide_cancel(s, caller, now, new_id), cause
        )
        lifecycle.check_not_expired(state)
        log.info("booking cancelled", booking_id=str(booking_id), status=state.booking.status)
        return state.booking

    async def expire_holds(self) -> int:
        """Expire HELD bookings past their time, a batch at a time; how many. Replicas may run
        this at once: each locks other bookings, and a locked booking is decided once."""
        count: list[int] = [0]

        def decide_at(
            locked: Mapping[uuid.UUID, domain.BookingState], now: datetime
        ) -> list[repo.Change]:
            changes = []
            for state in locked.values():
                events = lifecycle.decide_expiry(state, now, new_id)
                if events:
                    after = _evolved(state, events)
                    changes.append(repo.Change(events, Cause(SWEEPER), state.version, after))
            count[0] = len(changes)
            return changes

        expired = 0
        while True:
            count[0] = 0
            committed: list[tuple[Sequence[repo.Change], datetime]] = []
            await self._records.expire(EXPIRY_BATCH, _noting(decide_at, committed))
            for changes, _ in committed:
                self._outcomes.committed(changes)
            expired += count[0]
            if count[0] < EXPIRY_BATCH:
                if expired:
                    log.info("holds expired", count=expired)
                return expired

    async def _change(
        self,
        booking_id: uuid.UUID,
        decide: Callable[[domain.BookingState, datetime], list[domain.StreamEvent]],
        cause: Cause,
    ) -> domain.BookingState:
        """Decide on the booking's locked row and record what was decided; its state then."""
        after: list[domain.BookingState] = []

        def decide_at(
            locked: Mapping[uuid.UUID, domain.BookingState], now: datetime
        ) -> list[repo.Change]:
            after.clear()  # a deadlock runs the unit again
            state = locked.get(booking_id)
            if state is None:
                raise NotFound(f"booking {booking_id} does not exist")
            events = decide(state, now)
            after.append(_evolved(state, events))
            return [repo.Change(events, cause, state.version, after[0])] if events else []

        committed: list[tuple[Sequence[repo.Change], datetime]] = []
        await self._records.change([booking_id], _noting(decide_at, committed))
        for changes, _ in committed:
            self._outcomes.committed(changes)
        return after[0]


def _noting(
    decide_at: repo.DecideChanges, into: list[tuple[Sequence[repo.Change], datetime]]
) -> repo.DecideChanges:
    """``decide_at``, keeping in ``into`` what its last run decided and when: what the
    commit recorded (a deadlock runs the unit, and the decision, again)."""

    def noted(locked: Mapping[uuid.UUID, domain.BookingState], now: datetime) -> list[repo.Change]:
        changes = list(decide_at(locked, now))
        into[:] = [(changes, now)]
        return changes

    return noted


def _evolved(
    state: domain.BookingState, events: Sequence[domain.StreamEvent]
) -> domain.BookingState:
    for event in events:
        state = domain.evolve(state, event)
    return state


def _cause(outcome: lifecycle.SagaAnswer, received: Received) -> Cause:
    """A settlement's cause: this consumer, acting on the outcome's message, in its trace."""
    return Cause(CONSUMER).caused_by(
        str(outcome.message_id), received.correlation_id, received.traceparent
    )


def _booking_of(events: Sequence[Any]) -> Booking | None:
    """The booking folded from the events of its stream, None before the first."""
    return domain.fold(events).booking if events else None


def _replay(key: repo.StoredKey, fingerprint: str) -> Accepted | None:
    """The first answer given for a key, None while its request is in flight."""
    if key.fingerprint != fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was used with a different request body; "
            "use a new key for a new request"
        )
    if key.booking_id is None or key.response is None:
        return None
    return Accepted(key.booking_id, key.response.encode(), replayed=True)
