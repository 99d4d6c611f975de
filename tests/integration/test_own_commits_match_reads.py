"""The booking a replica hands its waiters as it commits a change is, field for field and byte
for byte on the wire, what ``GET /api/v1/bookings/{id}`` reads from the projection row then:
for every settlement and transition (held with its expiry, rejected with its reason, a cancel
while PENDING, cancelling, cancelled, confirmed, expired), alone and in one batch."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from tests.fakes.booking import InMemoryEvents
from tests.harness.databases import own_databases
from tests.unit.booking_world import confirmation, rejection
from ticketing.booking.changes import Change
from ticketing.booking.lifecycle import Caller
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.contracts.booking import Booking, BookingCreate, BookingStatus, CustomerCreate
from ticketing.contracts.events import OrderReleased
from ticketing.shared.db.engine import create_engine
from ticketing.shared.errors import Conflict
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause

CLIENT = Cause("box-office", correlation_id="req", causation_id="req")
OWNER = Caller("box-office")
# A reason as the saga may word it: not ASCII, with spaces at its end.
REASON = "Plätze vergeben — 🎟 sold out  "


class Handed:
    """The bookings the commit observer was handed, the last of each."""

    def __init__(self) -> None:
        self.last: dict[uuid.UUID, Booking] = {}

    def committed(self, changes: Sequence[Change]) -> None:
        for change in changes:
            self.last[change.state.booking.id] = change.state.booking

    def settled(self, changes: Sequence[Change], now: datetime) -> None:
        pass


@dataclass
class World:
    service: BookingService  # holds for an hour
    lapsing: BookingService  # holds that have run out as they start
    handed: Handed
    event_id: uuid.UUID
    customer_id: uuid.UUID

    async def book(self, *, hold: bool = False) -> uuid.UUID:
        data = BookingCreate(self.customer_id, self.event_id, 3, hold=hold)
        body = msgspec.json.encode(data)
        return (
            await self.service.requests.request_booking(data, raw_body=body, cause=CLIENT)
        ).booking_id

    async def matches(self, *booking_ids: uuid.UUID, status: BookingStatus) -> None:
        """What was handed for each booking is what a read returns now."""
        for booking_id in booking_ids:
            handed = self.handed.last.pop(booking_id)
            read = await self.service.get_booking(booking_id)
            assert handed.status is status
            assert handed == read
            assert msgspec.json.encode(handed) == msgspec.json.encode(read)
            for moment in (handed.created_at, handed.expires_at):
                assert moment is None or moment.utcoffset() == timedelta(0)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with own_databases("booking") as settings:
        engine = create_engine(settings, "booking")
        try:
            handed, inventory = Handed(), InMemoryEvents()
            records = SqlBookingRecords(engine, consumer=CONSUMER)

            def service(hold_for: timedelta) -> BookingService:
                return BookingService(
                    records, inventory, max_tickets=4, hold_for=hold_for, observer=handed
                )

            first = service(timedelta(hours=1))
            customer = await first.create_customer(
                CustomerCreate("Ada", f"{uuid.uuid4().hex}@example.com"), CLIENT
            )
            yield World(
                first,
                service(timedelta(0)),
                handed,
                inventory.schedule(100, price="12.5"),
                customer.id,
            )
        finally:
            await engine.dispose()


def confirmed(booking_id: uuid.UUID) -> Received:
    return Received(confirmation(booking_id), "trace")


def rejected(booking_id: uuid.UUID) -> Received:
    return Received(dataclasses.replace(rejection(booking_id), reason=REASON), "trace")


def released(booking_id: uuid.UUID) -> Received:
    answer = OrderReleased(
        message_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        booking_id=booking_id,
        event_id=uuid.uuid4(),
        ticket_count=3,
        reason="cancelled",
        released_at=datetime.now(UTC),
    )
    return Received(answer, "trace")


async def test_every_settlement_and_transition_hands_what_a_read_returns(world: World) -> None:
    plain, held, refused, asked = (
        await world.book(),
        await world.book(hold=True),
        await world.book(),
        await world.book(),
    )
    await world.service.cancel(asked, OWNER, CLIENT)
    await world.matches(asked, status=BookingStatus.PENDING)  # cancel_requested
    # The saga's answers, in one batch.
    await world.service.apply_saga_answers(
        [confirmed(plain), confirmed(held), rejected(refused), confirmed(asked)]
    )
    await world.matches(plain, status=BookingStatus.CONFIRMED)
    await world.matches(held, status=BookingStatus.HELD)  # expires_at to the microsecond
    await world.matches(refused, status=BookingStatus.REJECTED)
    await world.matches(asked, status=BookingStatus.CANCELLING)  # settled and cancelled at once
    await world.service.confirm(held, OWNER, CLIENT)
    await world.matches(held, status=BookingStatus.CONFIRMED)
    await world.service.cancel(plain, OWNER, CLIENT)
    await world.matches(plain, status=BookingStatus.CANCELLING)
    await world.service.apply_saga_answers([released(plain)])
    await world.matches(plain, status=BookingStatus.CANCELLED)


async def test_holds_that_run_out_hand_what_a_read_returns(world: World) -> None:
    swept, confirmed_late, cancelled_late = (
        await world.book(hold=True),
        await world.book(hold=True),
        await world.book(hold=True),
    )
    await world.lapsing.apply_saga_answers(
        [confirmed(swept), confirmed(confirmed_late), confirmed(cancelled_late)]
    )
    await world.matches(swept, confirmed_late, cancelled_late, status=BookingStatus.HELD)
    assert await world.service.expire_holds() == 3
    await world.matches(swept, confirmed_late, cancelled_late, status=BookingStatus.EXPIRED)


async def test_a_confirm_or_cancel_that_finds_the_hold_run_out_hands_the_expiry(
    world: World,
) -> None:
    confirmed_late, cancelled_late = await world.book(hold=True), await world.book(hold=True)
    await world.lapsing.apply_saga_answers([confirmed(confirmed_late), confirmed(cancelled_late)])
    await world.matches(confirmed_late, cancelled_late, status=BookingStatus.HELD)
    with pytest.raises(Conflict):
        await world.service.confirm(confirmed_late, OWNER, CLIENT)
    with pytest.raises(Conflict):
        await world.service.cancel(cancelled_late, OWNER, CLIENT)
    await world.matches(confirmed_late, cancelled_late, status=BookingStatus.EXPIRED)
