"""``ticketing seed --demo``: demo venues, events and customers, idempotent."""

from __future__ import annotations

import argparse
import asyncio
import functools
import uuid
from datetime import UTC, datetime, timedelta

from ticketing.shared.settings import Settings

DEMO_NAMESPACE = uuid.UUID("6b1f1d0e-3c55-4a7e-9a55-2c1e0f0d7e01")
VENUES = [
    ("Riverside Arena", "1 River Road", 12000),
    ("The Blue Room", "42 Jazz Lane", 300),
]
EVENTS = [
    ("Summer Festival", 0, 10000, "79.00", 30),
    ("Flash Sale Night", 0, 100, "19.99", 7),
    ("Late Jazz Session", 1, 250, "35.50", 14),
]
CUSTOMERS = [("Ada Lovelace", "ada@example.com"), ("Alan Turing", "alan@example.com")]


def demo_id(kind: str, name: str) -> uuid.UUID:
    """A stable id per demo record, so that seeding twice changes nothing."""
    return uuid.uuid5(DEMO_NAMESPACE, f"{kind}:{name}")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    seed = commands.add_parser("seed", help="load demo data (idempotent)")
    seed.add_argument("--demo", action="store_true", required=True, help="the demo data set")


def run(settings: Settings, args: argparse.Namespace) -> int:
    del args
    created = asyncio.run(_seed(settings))
    print(f"demo data: {created} record(s) created, the rest already there")
    for name, *_ in EVENTS:
        print(f"  event  {demo_id('event', name)}  {name}")
    for name, email in CUSTOMERS:
        print(f"  customer  {demo_id('customer', email)}  {name} <{email}>")
    return 0


async def _seed(settings: Settings) -> int:
    from ticketing.booking import repository as bookings
    from ticketing.booking.domain import CustomerRegistered
    from ticketing.inventory import repository as inventory
    from ticketing.inventory.domain import (
        EventState,
        VenueState,
        decide_register_venue,
        decide_schedule_event,
        evolve,
    )
    from ticketing.shared.db.engine import create_engine
    from ticketing.shared.db.unit_of_work import UnitOfWork, in_unit_of_work
    from ticketing.shared.store.eventstore import Cause

    register = bookings.register_customer
    cause = Cause(actor="ticketing seed")

    async def seed_inventory(uow: UnitOfWork) -> int:
        """The demo venues and events that are not there yet (one unit of work)."""
        created, venues = 0, []
        for name, address, capacity in VENUES:
            venue: VenueState | EventState | None = await inventory.get_venue_state(
                uow.conn, demo_id("venue", name)
            )
            if venue is None:
                registered = decide_register_venue(demo_id("venue", name), name, address, capacity)
                inventory.register_venue(uow, registered, cause)
                venue = evolve(None, registered)
                created += 1
            assert isinstance(venue, VenueState)
            venues.append(venue)
        for name, venue_index, capacity, price, days in EVENTS:
            event_id = demo_id("event", name)
            if await inventory.event_exists(uow.conn, event_id):
                continue
            starts_at = datetime.now(UTC).replace(hour=20, minute=0, second=0, microsecond=0)
            scheduled = decide_schedule_event(
                event_id,
                venues[venue_index],
                name=name,
                total_capacity=capacity,
                ticket_price=price,
                starts_at=starts_at + timedelta(days=days),
            )
            inventory.schedule_event(uow, scheduled, cause)
            created += 1
        return created

    created = 0
    inventory_engine = create_engine(settings, "inventory")
    booking_engine = create_engine(settings, "booking")
    try:
        created += await in_unit_of_work(inventory_engine, seed_inventory)
        for name, email in CUSTOMERS:
            customer_id = demo_id("customer", email)
            async with booking_engine.connect() as conn:
                known = await bookings.get_customer(conn, customer_id)
            if known is None:
                registration = CustomerRegistered(
                    customer_id=customer_id,
                    name=name,
                    email=email,
                    address=None,
                    registered_at=datetime.now(UTC),
                )
                await in_unit_of_work(
                    booking_engine, functools.partial(register, event=registration, cause=cause)
                )
                created += 1
    finally:
        await inventory_engine.dispose()
        await booking_engine.dispose()
    return created
