"""The booking lifecycle's races on MariaDB (issue 19): replicas expiring holds at once, a
confirm racing the expiry, cancels racing each other. Each booking must end with exactly one
decision, and the projections must agree with the events."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes.booking import InMemoryEvents
from tests.harness.databases import own_databases
from ticketing.booking import projections
from ticketing.booking.lifecycle import Caller
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.contracts.booking import BookingCreate, BookingStatus, CustomerCreate
from ticketing.contracts.events import OrderConfirmed
from ticketing.shared.db.engine import create_engine
from ticketing.shared.errors import Conflict
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause

CLIENT = Cause("box-office", correlation_id="req-1", causation_id="req-1")
OWNER = Caller("box-office")


class Replicas:
    """Two booking services, each on its own engine (its own connections), over one database."""

    def __init__(self, engines: list[AsyncEngine], hold_for: timedelta) -> None:
        self.engines = engines
        self.inventory = InMemoryEvents()
        self.event_id = self.inventory.schedule(left_capacity=10_000)
        self.services = [
            BookingService(
                SqlBookingRecords(engine, consumer=CONSUMER),
                self.inventory,
                max_tickets=4,
                hold_for=hold_for,
            )
            for engine in engines
        ]
        self.customer_id = uuid.uuid4()

    async def holds(self, count: int) -> list[uuid.UUID]:
        """``count`` bookings HELD by the saga's answer."""
        first = self.services[0]
        customer = await first.create_customer(
            CustomerCreate("Ada", f"{uuid.uuid4().hex}@example.com"), CLIENT
        )
        data = BookingCreate(customer.id, self.event_id, 1, hold=True)
        body = msgspec.json.encode(data)
        ids = [
            (await first.requests.request_booking(data, raw_body=body, cause=CLIENT)).booking_id
            for _ in range(count)
        ]
        answers = [
            Received(
                OrderConfirmed(
                    message_id=uuid.uuid4(),
                    order_id=uuid.uuid4(),
                    booking_id=booking_id,
                    event_id=self.event_id,
                    ticket_count=1,
                    total_price="25.00",
                    confirmed_at=datetime.now(UTC),
                ),
                None,
            )
            for booking_id in ids
        ]
        await first.apply_saga_answers(answers)
        return ids

    async def types(self, booking_id: uuid.UUID) -> list[str]:
        history = await self.services[0].booking_history(booking_id, limit=100, cursor=None)
        return [entry.type for entry in history.items]


@pytest.fixture
async def engines() -> AsyncIterator[list[AsyncEngine]]:
    async with own_databases("booking") as settings:
        made = [create_engine(settings, "booking") for _ in range(2)]
        try:
            yield made
        finally:
            for engine in made:
                await engine.dispose()


async def test_replicas_expiring_at_once_expire_each_hold_once(engines: list[AsyncEngine]) -> None:
    replicas = Replicas(engines, hold_for=timedelta(0))
    ids = await replicas.holds(250)  # more than one batch of the sweep
    counts = await asyncio.gather(
        *(service.expire_holds() for service in replicas.services for _ in range(3))
    )
    assert sum(counts) == len(ids)
    for booking_id in ids:
        assert (await replicas.types(booking_id)).count("HoldExpired") == 1
        booking = await replicas.services[1].get_booking(booking_id)
        assert booking.status is BookingStatus.EXPIRED
    assert await projections.verify(engines[0]) == []


async def test_a_confirm_racing_the_expiry_has_exactly_one_winner(
    engines: list[AsyncEngine],
) -> None:
    replicas = Replicas(engines, hold_for=timedelta(milliseconds=500))
    ids = await replicas.holds(40)
    expires_at = (await replicas.services[0].get_booking(ids[0])).expires_at
    assert expires_at is not None
    # The confirms spread over the holds' time, the sweeps run across it.
    start = (expires_at - datetime.now(UTC)).total_seconds() - 0.05
    await asyncio.sleep(max(start, 0))

    async def confirm(booking_id: uuid.UUID) -> str:
        await asyncio.sleep(random.uniform(0, 0.1))
        try:
            await replicas.services[0].confirm(booking_id, OWNER, CLIENT)
        except Conflict:
            return "expired"
        return "confirmed"

    async def sweep() -> None:
        for _ in range(40):
            await replicas.services[1].expire_holds()
            await asyncio.sleep(0.003)

    answers, _ = await asyncio.gather(asyncio.gather(*(confirm(i) for i in ids)), sweep())
    winners = {"confirmed": "BookingConfirmed", "expired": "HoldExpired"}
    for booking_id, said in zip(ids, answers, strict=True):
        after_hold = (await replicas.types(booking_id))[2:]
        assert after_hold == [winners[said]], booking_id  # one decision, the one answered
    assert await projections.verify(engines[0]) == []


async def test_cancels_racing_on_two_replicas_cancel_once(engines: list[AsyncEngine]) -> None:
    replicas = Replicas(engines, hold_for=timedelta(minutes=15))
    ids = await replicas.holds(20)
    await asyncio.gather(
        *(
            service.cancel(booking_id, OWNER, CLIENT)
            for booking_id in ids
            for service in replicas.services * 2
        )
    )
    for booking_id in ids:
        assert await replicas.types(booking_id) == [
            "BookingRequested",
            "BookingHeld",
            "BookingCancelled",
        ]
    assert await projections.verify(engines[0]) == []
