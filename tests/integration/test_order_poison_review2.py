"""Review: a BookingRequested whose price is no decimal must not reserve seats.

Its contract types the prices as ``str``, so it decoded, was reserved at inventory, and only
then failed to become its ``orders`` row: dead-lettered with its seats held. Prices are now
held to the shape the services write when the message is decoded, so such a message goes to
the dead-letter topic before anything is reserved."""

from __future__ import annotations

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import order_records as records
from tests.integration.test_order_event_store import (  # noqa: F401 - fixtures
    Inventory,
    engine,
    order_db,
    requested,
)
from tests.unit.test_message_runner import DeadLetters
from ticketing.contracts.events import EVENT_TYPE_HEADER, BookingRequested
from ticketing.order.service import OrderService
from ticketing.shared.consumer import Delivery, MessageRunner


async def test_a_request_whose_price_is_no_decimal_reserves_no_seats(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    inventory = Inventory()
    payload = msgspec.json.encode(requested(total_price="fifty"))
    dead = DeadLetters()
    stand_in: object = dead
    runner = MessageRunner(stand_in, dlq_topic="t.dlq", accepted=(BookingRequested,))  # type: ignore[arg-type]
    delivery = Delivery("t", 0, 0, None, payload, {EVENT_TYPE_HEADER: "BookingRequested"})
    await runner.run_batch([delivery], OrderService(records(engine), inventory).handle_batch)
    assert inventory.calls == [], "seats were reserved for a request that is dead-lettered"
    assert dead.published == [payload]
