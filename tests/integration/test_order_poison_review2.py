"""Review: order reserves at inventory before it has checked that it can record the outcome.

A BookingRequested whose price is no decimal decodes (the contract's type is ``str``), is
reserved at inventory, and only then fails to become its ``orders`` row: the runner retries it
and dead-letters it, and the seats stay reserved for a booking that has no order and never
settles (replaying it from the dead-letter topic fails the same way)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.test_order_event_store import (  # noqa: F401 - fixtures
    Inventory,
    engine,
    order_db,
    requested,
)
from ticketing.order.service import OrderService
from ticketing.shared.consumer import Received


async def test_a_request_order_cannot_record_reserves_no_seats(engine: AsyncEngine) -> None:  # noqa: F811
    inventory = Inventory()
    message = requested(total_price="fifty")
    try:
        await OrderService(engine, inventory).handle_batch([Received(message, None)])
    except Exception:  # noqa: BLE001 - the runner retries it, then dead-letters it
        assert inventory.calls == [], "seats were reserved for a request that is dead-lettered"
