"""The whole lifecycle on MariaDB with two replicas of booking, order and inventory, messages
delivered at least once (redelivered, mixed in batches, handed to two order or booking replicas at
once), order crashing right after inventory answered (before it recorded anything), holds
expiring while customers confirm and cancel. Once quiet, every seat is accounted for, none
released twice, no booking PENDING or CANCELLING, every projection agrees with its events, and no
customer holds more than an event's limit."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import msgspec
import pytest
from sqlalchemy import text

from tests.integration.lifecycle_world import (
    OWNER,
    World,
    deliver_until,
    repeat_until,
    settle,
    world,
)
from ticketing.booking import projections as booking_projections
from ticketing.booking.lifecycle import Caller
from ticketing.contracts.booking import BookingCreate, BookingStatus, CustomerCreate
from ticketing.contracts.inventory import (
    Event,
    EventCreate,
    VenueCreate,
)
from ticketing.inventory import projections as inventory_projections
from ticketing.order import projections as order_projections
from ticketing.shared.errors import TicketingError
from ticketing.shared.store.eventstore import Cause


async def _run(seed: int) -> None:
    async with world(seed) as w:
        rng = w.rng
        admin = Cause("admin")
        inv = w.inventory[0]
        venue = await inv.create_venue(VenueCreate("Hall", "1 Road", 1000), admin)
        limited = await inv.create_event(
            EventCreate("Limited", venue.id, 20, "10.00", max_tickets_per_customer=3), admin
        )
        open_sale = await inv.create_event(EventCreate("Open", venue.id, 15, "10.00"), admin)
        events = [limited, open_sale]
        customers = [
            (
                await w.bookings[0].create_customer(
                    CustomerCreate(f"C{n}", f"c{n}.{uuid.uuid4().hex[:8]}@example.com"),
                    Cause(OWNER),
                )
            ).id
            for n in range(5)
        ]
        owner = Caller(OWNER)
        stop = asyncio.Event()

        async def customer_acts(n: int) -> None:
            await asyncio.sleep(rng.uniform(0, 1.5))
            service = rng.choice(w.bookings)
            data = BookingCreate(
                rng.choice(customers),
                rng.choice(events).id,
                rng.randint(1, 2),
                hold=rng.random() < 0.6,
            )
            try:
                accepted = await service.requests.request_booking(
                    data, raw_body=msgspec.json.encode(data), cause=Cause(OWNER)
                )
            except TicketingError:
                return  # sold out as far as booking can see
            what = rng.random()
            await asyncio.sleep(rng.choice([0, 0, rng.uniform(0, 0.8)]))
            actor = rng.choice(w.bookings)
            with contextlib.suppress(TicketingError):
                if what < 0.35:
                    await actor.cancel(accepted.booking_id, owner, Cause(OWNER))
                elif what < 0.7:
                    for _ in range(20):  # a PENDING booking is 409 to retry
                        try:
                            await actor.confirm(accepted.booking_id, owner, Cause(OWNER))
                            break
                        except TicketingError as error:
                            if "PENDING" not in str(error):
                                raise
                            await asyncio.sleep(0.05)
                    if rng.random() < 0.4:
                        await asyncio.sleep(rng.uniform(0, 0.3))
                        await rng.choice(w.bookings).cancel(
                            accepted.booking_id, owner, Cause(OWNER)
                        )

        background = [
            asyncio.create_task(repeat_until(stop, 0.05, s.expire_holds)) for s in w.bookings
        ] + [asyncio.create_task(deliver_until(stop, t)) for t in (w.to_order, w.to_booking)]
        try:
            await asyncio.gather(*(customer_acts(n) for n in range(70)))
        finally:
            stop.set()
            await asyncio.gather(*background)
        await settle(w)
        assert not w.to_order.failures, w.to_order.failures
        assert not w.to_booking.failures, w.to_booking.failures
        await _check(w, events, customers)


async def _check(w: World, events: list[Event], customers: list[uuid.UUID]) -> None:
    async with w.engines["booking"][0].connect() as conn:
        rows = list(
            await conn.execute(
                text("SELECT id, customer_id, event_id, ticket_count, status FROM bookings")
            )
        )
    stuck = [row for row in rows if row.status in ("PENDING", "CANCELLING", "HELD")]
    assert not stuck, stuck
    async with w.engines["inventory"][0].connect() as conn:
        left = {
            str(row[0]): row[1]
            for row in await conn.execute(text("SELECT id, left_capacity FROM events"))
        }
        held = {
            str(row.booking_id): row
            for row in await conn.execute(
                text(
                    "SELECT booking_id, ticket_count, released_at FROM reservations "
                    "WHERE status = 'reserved'"
                )
            )
        }
        releases = list(
            await conn.execute(
                text(
                    "SELECT JSON_VALUE(payload, '$.booking_id') AS b, COUNT(*) AS n "
                    "FROM event_store WHERE event_type = 'SeatsReleased' GROUP BY b"
                )
            )
        )
    assert all(row.n == 1 for row in releases), releases
    confirmed = [row for row in rows if row.status == BookingStatus.CONFIRMED.value]
    for event in events:
        seats = sum(r.ticket_count for r in confirmed if str(r.event_id) == str(event.id))
        taken = event.total_capacity - left[str(event.id)]
        assert taken == seats, (event.name, taken, seats)
    for row in rows:
        reservation = held.get(str(row.id))
        holds_now = reservation is not None and reservation.released_at is None
        assert holds_now == (row.status == BookingStatus.CONFIRMED.value), (row, reservation)
    limited = events[0]
    for customer in customers:
        mine = sum(
            r.ticket_count
            for r in confirmed
            if r.customer_id == customer and r.event_id == limited.id
        )
        assert mine <= 3, (customer, mine)
    assert await booking_projections.verify(w.engines["booking"][0]) == []
    assert await order_projections.verify(w.engines["order"][0]) == []
    assert await inventory_projections.verify(w.engines["inventory"][0]) == []
    # The rows already say what the events say: a rebuild writes and deletes nothing.
    for module, service in (
        (booking_projections, "booking"),
        (order_projections, "order"),
        (inventory_projections, "inventory"),
    ):
        rebuilt = await module.rebuild(w.engines[service][0])
        assert not any(rebuilt.written.values()), (service, rebuilt.written)
        assert not any(rebuilt.deleted.values()), (service, rebuilt.deleted)
        assert not rebuilt.broken, (service, rebuilt.broken)
    statuses = {row.status for row in rows}
    assert {"CONFIRMED", "CANCELLED", "EXPIRED"} <= statuses, statuses  # the run did it all
    assert w.crashes[0] > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_mixed_lifecycle_under_redelivery_replicas_and_crashes_accounts_for_every_seat(
    seed: int,
) -> None:
    await _run(seed)
