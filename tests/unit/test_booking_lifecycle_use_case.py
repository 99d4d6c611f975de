"""Booking's lifecycle use cases (issue 19) on in-memory records: what confirm, cancel, the
expiry and the saga's answers record, with whose cause, and what they refuse."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from tests.fakes.booking import InMemoryBookingRecords, InMemoryEvents
from tests.harness.broker import as_the_runner_does
from ticketing.booking.lifecycle import Caller
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.booking.transitions import SWEEPER
from ticketing.contracts.booking import BookingCreate, BookingStatus, CustomerCreate
from ticketing.contracts.events import (
    PUBLICATIONS,
    OrderConfirmed,
    OrderReleased,
    ReleaseReason,
)
from ticketing.shared.errors import Conflict, Forbidden, NotFound
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause

CLIENT = Cause("box-office", correlation_id="req-1", causation_id="req-1")
OWNER = Caller("box-office")


class World:
    def __init__(self, hold_for: timedelta = timedelta(minutes=15)) -> None:
        self.records = InMemoryBookingRecords()
        self.inventory = InMemoryEvents()
        self.service = BookingService(
            self.records, self.inventory, max_tickets=4, hold_for=hold_for
        )
        self.event_id = self.inventory.schedule(left_capacity=10)
        self.customer_id = uuid.uuid4()
        self.orders: dict[uuid.UUID, uuid.UUID] = {}

    async def booking(self, *, hold: bool) -> uuid.UUID:
        if self.customer_id not in self.records.customers:
            customer = CustomerCreate("Ada", "ada@example.com")
            self.customer_id = (await self.service.create_customer(customer, CLIENT)).id
        data = BookingCreate(self.customer_id, self.event_id, 2, hold=hold)
        accepted = await self.service.requests.request_booking(
            data, raw_body=msgspec.json.encode(data), cause=CLIENT
        )
        return accepted.booking_id

    async def saga_confirms(self, booking_id: uuid.UUID) -> OrderConfirmed:
        order_id = self.orders.setdefault(booking_id, uuid.uuid4())
        outcome = OrderConfirmed(
            message_id=uuid.uuid4(),
            order_id=order_id,
            booking_id=booking_id,
            event_id=self.event_id,
            ticket_count=2,
            total_price="50.00",
            confirmed_at=datetime.now(UTC),
        )
        await self.service.apply_saga_answers([Received(outcome, "trace")])
        return outcome

    def released(self, booking_id: uuid.UUID, reason: ReleaseReason) -> OrderReleased:
        return OrderReleased(
            message_id=uuid.uuid4(),
            order_id=self.orders[booking_id],
            booking_id=booking_id,
            event_id=self.event_id,
            ticket_count=2,
            reason=reason,
            released_at=datetime.now(UTC),
        )

    def status(self, booking_id: uuid.UUID) -> BookingStatus:
        return self.records.bookings[booking_id].booking.status

    def types(self, booking_id: uuid.UUID) -> list[str]:
        return [r.event_type for r in self.records.stream_of(booking_id)]


async def test_a_hold_is_held_then_confirmed_by_its_client() -> None:
    world = World()
    booking_id = await world.booking(hold=True)
    await world.saga_confirms(booking_id)
    held = await world.service.get_booking(booking_id)
    assert held.status is BookingStatus.HELD
    assert held.hold
    assert held.expires_at is not None
    assert held.expires_at - held.created_at >= timedelta(minutes=15)
    confirmed = await world.service.confirm(booking_id, OWNER, CLIENT)
    assert (confirmed.status, confirmed.expires_at) == (BookingStatus.CONFIRMED, None)
    again = await world.service.confirm(booking_id, OWNER, CLIENT)
    assert again == confirmed
    assert world.types(booking_id) == ["BookingRequested", "BookingHeld", "BookingConfirmed"]
    _, held_event, confirm_event = world.records.stream_of(booking_id)
    assert (held_event.actor, held_event.correlation_id) == (CONSUMER, "trace")
    assert (confirm_event.actor, confirm_event.causation_id) == ("box-office", "req-1")


async def test_another_client_is_refused_and_nothing_is_recorded() -> None:
    world = World()
    booking_id = await world.booking(hold=True)
    await world.saga_confirms(booking_id)
    before = len(world.records.events)
    with pytest.raises(Forbidden):
        await world.service.confirm(booking_id, Caller("reseller"), CLIENT)
    with pytest.raises(Forbidden):
        await world.service.cancel(booking_id, Caller("reseller"), CLIENT)
    assert len(world.records.events) == before
    admin = await world.service.cancel(booking_id, Caller("ops", admin=True), CLIENT)
    assert admin.status is BookingStatus.CANCELLING
    with pytest.raises(NotFound):
        await world.service.confirm(uuid.uuid4(), OWNER, CLIENT)


async def test_a_cancel_publishes_its_release_and_completes_on_the_seats_coming_back() -> None:
    world = World()
    booking_id = await world.booking(hold=False)
    await world.saga_confirms(booking_id)
    cancelling = await world.service.cancel(booking_id, OWNER, CLIENT)
    assert cancelling.status is BookingStatus.CANCELLING
    assert (await world.service.cancel(booking_id, OWNER, CLIENT)) == cancelling  # a repeat
    cancelled = world.records.stream_of(booking_id)[-1]
    assert cancelled.event_type == "BookingCancelled"
    assert cancelled.event_type in PUBLICATIONS  # the store's relay sends it to order
    assert cancelled.event.event_id == world.event_id
    release = world.released(booking_id, "cancelled")
    await as_the_runner_does(world.service.apply_saga_answers, [Received(release, None)] * 2)
    await world.service.apply_saga_answers([Received(release, None)])  # redelivered later
    assert world.status(booking_id) is BookingStatus.CANCELLED
    assert world.types(booking_id).count("SeatsReturned") == 1
    with pytest.raises(Conflict):
        await world.service.confirm(booking_id, OWNER, CLIENT)


async def test_a_cancel_while_pending_is_applied_when_the_saga_answers() -> None:
    world = World()
    booking_id = await world.booking(hold=True)
    pending = await world.service.cancel(booking_id, OWNER, CLIENT)
    assert (pending.status, pending.cancel_requested) == (BookingStatus.PENDING, True)
    with pytest.raises(Conflict) as refused:
        await world.service.confirm(booking_id, OWNER, CLIENT)
    assert refused.value.extensions["retry_after"] == 1
    await world.saga_confirms(booking_id)
    assert world.status(booking_id) is BookingStatus.CANCELLING
    assert world.types(booking_id)[-2:] == ["BookingHeld", "BookingCancelled"]


async def test_the_expiry_expires_each_due_hold_once_and_publishes_its_release() -> None:
    world = World(hold_for=timedelta(0))
    holds = [await world.booking(hold=True) for _ in range(3)]
    for booking_id in holds:
        await world.saga_confirms(booking_id)
    plain = await world.booking(hold=False)
    await world.saga_confirms(plain)
    assert await world.service.expire_holds() == 3
    assert await world.service.expire_holds() == 0
    for booking_id in holds:
        assert world.status(booking_id) is BookingStatus.EXPIRED
        expired = world.records.stream_of(booking_id)[-1]
        assert (expired.event_type, expired.actor) == ("HoldExpired", SWEEPER)
        with pytest.raises(Conflict):
            await world.service.cancel(booking_id, OWNER, CLIENT)
        # Its seats coming back changes nothing more.
        await world.service.apply_saga_answers(
            [Received(world.released(booking_id, "expired"), None)]
        )
        assert world.types(booking_id)[-1] == "HoldExpired"
    assert world.status(plain) is BookingStatus.CONFIRMED


async def test_a_confirm_after_the_time_expires_the_hold_and_answers_409() -> None:
    world = World(hold_for=timedelta(milliseconds=1))
    booking_id = await world.booking(hold=True)
    await world.saga_confirms(booking_id)
    await asyncio.sleep(0.01)
    with pytest.raises(Conflict, match="expired"):
        await world.service.confirm(booking_id, OWNER, CLIENT)
    assert world.status(booking_id) is BookingStatus.EXPIRED
    assert await world.service.expire_holds() == 0  # expired once, by the confirm
    assert world.types(booking_id).count("HoldExpired") == 1


async def test_retrying_a_hold_request_with_its_key_does_not_extend_it() -> None:
    world = World()
    await world.booking(hold=False)  # registers the customer
    data = BookingCreate(world.customer_id, world.event_id, 1, hold=True)
    body = msgspec.json.encode(data)
    first = await world.service.requests.request_booking(
        data, raw_body=body, cause=CLIENT, idempotency_key="k"
    )
    await world.saga_confirms(first.booking_id)
    held = await world.service.get_booking(first.booking_id)
    retry = await world.service.requests.request_booking(
        data, raw_body=body, cause=CLIENT, idempotency_key="k"
    )
    assert (retry.booking_id, retry.replayed) == (first.booking_id, True)
    assert (await world.service.get_booking(first.booking_id)).expires_at == held.expires_at
