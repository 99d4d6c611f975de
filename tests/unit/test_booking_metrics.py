"""Booking's metrics (issue 22): every booking that reaches an outcome counts once, whatever
path brought it there and however often its messages came; the saga's duration is observed
once per settlement, from the booking's request."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.fakes.booking import InMemoryBookingRecords, InMemoryEvents
from tests.harness.broker import as_the_runner_does
from ticketing.booking import domain
from ticketing.booking.changes import Change, DecideChanges
from ticketing.booking.lifecycle import (
    Caller,
)
from ticketing.booking.metrics import SETTLEMENTS, STATUS_REACHED_BY, BookingMetrics
from ticketing.booking.ports import SettleBookings
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.contracts.booking import BookingCreate, CustomerCreate
from ticketing.contracts.events import (
    OrderConfirmed,
    OrderRejected,
    OrderReleased,
)
from ticketing.shared.errors import Conflict
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause

CLIENT = Cause("box-office", correlation_id="req-1", causation_id="req-1")
OWNER = Caller("box-office")
OUTCOMES = [s.value for s in STATUS_REACHED_BY.values()]


class Rerunning(InMemoryBookingRecords):
    """Records whose every unit decides twice and keeps the second decision, as a deadlock
    makes the SQL records do."""

    def _record(
        self,
        locked: dict[uuid.UUID, domain.BookingState],
        decide_at: DecideChanges,
        *,
        claim: Sequence[uuid.UUID] = (),
        now: datetime | None = None,
    ) -> None:
        decide_at(locked, now or datetime.now(UTC))
        super()._record(locked, decide_at, claim=claim, now=now)


class World:
    def __init__(self, records: InMemoryBookingRecords | None = None) -> None:
        self.metrics = BookingMetrics()
        self.registry = CollectorRegistry()
        self.registry.register(self.metrics)
        self.records = records or InMemoryBookingRecords()
        self.inventory = InMemoryEvents()
        self.service = BookingService(
            self.records, self.inventory, max_tickets=4, observer=self.metrics
        )
        self.event_id = self.inventory.schedule(left_capacity=1000)
        self.customer_id: uuid.UUID | None = None
        self.orders: dict[uuid.UUID, uuid.UUID] = {}
        self.answers: dict[uuid.UUID, Received] = {}

    async def booking(self, *, hold: bool) -> uuid.UUID:
        if self.customer_id is None:
            customer = CustomerCreate("Ada", "ada@example.com")
            self.customer_id = (await self.service.create_customer(customer, CLIENT)).id
        data = BookingCreate(self.customer_id, self.event_id, 1, hold=hold)
        accepted = await self.service.requests.request_booking(
            data, raw_body=msgspec.json.encode(data), cause=CLIENT
        )
        return accepted.booking_id

    async def answer(self, booking_id: uuid.UUID, *, confirmed: bool) -> None:
        now = datetime.now(UTC)
        outcome: OrderConfirmed | OrderRejected
        if confirmed:
            order_id = self.orders.setdefault(booking_id, uuid.uuid4())
            outcome = OrderConfirmed(
                message_id=uuid.uuid4(),
                order_id=order_id,
                booking_id=booking_id,
                event_id=self.event_id,
                ticket_count=1,
                total_price="25.00",
                confirmed_at=now,
            )
        else:
            outcome = OrderRejected(
                message_id=uuid.uuid4(),
                booking_id=booking_id,
                event_id=self.event_id,
                reason="sold out",
                rejected_at=now,
            )
        self.answers[booking_id] = Received(outcome, None)
        await self.service.apply_saga_answers([self.answers[booking_id]])

    async def release(self, booking_id: uuid.UUID) -> None:
        if booking_id not in self.orders:
            return
        released = OrderReleased(
            message_id=uuid.uuid4(),
            order_id=self.orders[booking_id],
            booking_id=booking_id,
            event_id=self.event_id,
            ticket_count=1,
            reason="cancelled",
            released_at=datetime.now(UTC),
        )
        await as_the_runner_does(self.service.apply_saga_answers, [Received(released, None)] * 2)

    async def expire(self, booking_id: uuid.UUID) -> None:
        """Make the booking's hold (if it has one) due, then run the expiry."""
        state = self.records.bookings[booking_id]
        if state.booking.expires_at is not None:
            past = datetime.now(UTC) - timedelta(seconds=1)
            booking = msgspec.structs.replace(state.booking, expires_at=past)
            self.records.bookings[booking_id] = dataclasses.replace(state, booking=booking)
        await self.service.expire_holds()

    def outcome(self, status: str) -> float:
        value = self.registry.get_sample_value("booking_outcomes_total", {"outcome": status})
        assert value is not None
        return value

    def saga(self, status: str, suffix: str = "count") -> float:
        name = f"booking_saga_duration_seconds_{suffix}"
        value = self.registry.get_sample_value(name, {"outcome": status})
        assert value is not None
        return value

    def recorded(self, event_type: str, *, actor: str | None = None) -> int:
        return sum(
            1
            for r in self.records.events
            if r.event_type == event_type and (actor is None or r.actor == actor)
        )


async def test_every_outcome_shows_at_zero_before_any_booking() -> None:
    world = World()
    for status in OUTCOMES:
        assert world.outcome(status) == 0
    for cls in SETTLEMENTS:
        assert world.saga(STATUS_REACHED_BY[cls].value) == 0


async def test_the_saga_duration_runs_from_the_request_to_the_settlement() -> None:
    world = World()
    booking_id = await world.booking(hold=False)
    created = world.records.bookings[booking_id].booking.created_at
    before = datetime.now(UTC)
    await world.answer(booking_id, confirmed=True)
    after = datetime.now(UTC)
    assert world.saga("CONFIRMED") == 1
    observed = world.saga("CONFIRMED", "sum")
    assert (before - created).total_seconds() <= observed <= (after - created).total_seconds()
    assert world.outcome("CONFIRMED") == 1
    # The answer again (a redelivery that the inbox refuses) observes nothing more.
    await world.service.apply_saga_answers([world.answers[booking_id]])
    assert (world.saga("CONFIRMED"), world.outcome("CONFIRMED")) == (1, 1)


async def test_a_confirmed_hold_counts_as_held_then_confirmed_and_times_the_saga_once() -> None:
    world = World()
    booking_id = await world.booking(hold=True)
    await world.answer(booking_id, confirmed=True)
    await world.service.confirm(booking_id, OWNER, CLIENT)
    assert (world.outcome("HELD"), world.outcome("CONFIRMED")) == (1, 1)
    assert (world.saga("HELD"), world.saga("CONFIRMED")) == (1, 0)


async def test_a_decision_run_again_after_a_deadlock_counts_once() -> None:
    world = World(Rerunning())
    booking_id = await world.booking(hold=True)
    await world.answer(booking_id, confirmed=True)
    await world.expire(booking_id)
    assert (world.outcome("HELD"), world.saga("HELD"), world.outcome("EXPIRED")) == (1, 1, 1)


async def test_a_change_that_is_not_committed_counts_nothing() -> None:
    world = World()
    booking_id = await world.booking(hold=False)
    await world.answer(booking_id, confirmed=False)
    with pytest.raises(Conflict):
        await world.service.cancel(booking_id, OWNER, CLIENT)
    assert world.outcome("REJECTED") == 1
    assert world.outcome("CANCELLED") == 0


class _Failing(InMemoryBookingRecords):
    async def settle(self, batch: SettleBookings) -> None:
        now = datetime.now(UTC)
        changes: Sequence[Change] = batch.decide_at(self._locked(batch.booking_ids), now)
        assert changes  # decided, then the commit fails
        raise ConnectionError("the database went away at COMMIT")


async def test_a_settlement_whose_commit_failed_is_not_observed() -> None:
    world = World(_Failing())
    booking_id = await world.booking(hold=False)
    with pytest.raises(ConnectionError):
        await world.answer(booking_id, confirmed=True)
    assert (world.outcome("CONFIRMED"), world.saga("CONFIRMED")) == (0, 0)


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["book", "hold", "confirmed", "rejected", "again", "confirm", "cancel"])
        | st.sampled_from(["release", "expire"]),
        st.integers(0, 3),
    ),
    max_size=25,
)


@settings(max_examples=120, deadline=None)
@given(steps=STEPS)
async def test_the_counts_match_the_events_recorded_whatever_the_sequence(
    steps: list[tuple[str, int]],
) -> None:
    """Any sequence of requests, answers (redelivered too), confirms, cancels, releases and
    expiries: each outcome's count is the number of its events in the store, and the saga was
    timed once per settlement the consumer recorded."""
    world = World()
    bookings: list[uuid.UUID] = []
    for step, n in steps:
        if step in ("book", "hold"):
            bookings.append(await world.booking(hold=step == "hold"))
            continue
        if not bookings:
            continue
        booking_id = bookings[n % len(bookings)]
        try:
            if step in ("confirmed", "rejected"):
                await world.answer(booking_id, confirmed=step == "confirmed")
            elif step == "again" and booking_id in world.answers:
                await world.service.apply_saga_answers([world.answers[booking_id]])
            elif step == "confirm":
                await world.service.confirm(booking_id, OWNER, CLIENT)
            elif step == "cancel":
                await world.service.cancel(booking_id, OWNER, CLIENT)
            elif step == "release":
                await world.release(booking_id)
            elif step == "expire":
                await world.expire(booking_id)
        except Conflict:
            pass
    for cls, status in STATUS_REACHED_BY.items():
        assert world.outcome(status.value) == world.recorded(cls.__name__)
    for cls in SETTLEMENTS:
        by_saga = world.recorded(cls.__name__, actor=CONSUMER)
        assert world.saga(STATUS_REACHED_BY[cls].value) == by_saga
    assert sum(world.outcome(s) for s in OUTCOMES) >= sum(
        1
        for b in bookings
        if world.records.bookings[b].booking.status in STATUS_REACHED_BY.values()
    )
