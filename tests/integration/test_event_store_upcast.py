"""A row the store holds in an older shape is read back, through the real table and the real
read path, in the shape the code knows today."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.own_inventory import settings
from ticketing.inventory.tables import event_store
from ticketing.shared.db import sql
from ticketing.shared.db.engine import create_engine
from ticketing.shared.settings import Settings
from ticketing.shared.store.codec import EventCodec
from ticketing.shared.store.eventstore import Cause, EventStore, Pending

__all__ = ["settings"]  # the fixture: a database of its own, since its stream is no inventory's


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceSet:
    """Version 1 held ``price`` as a float of euros; version 2 holds ``cents`` and ``currency``."""

    SCHEMA_VERSION: ClassVar[int] = 2
    item_id: uuid.UUID
    cents: int
    currency: str


def price_v1_to_v2(shape: dict[str, Any]) -> dict[str, Any]:
    euros = shape.pop("price")
    return {**shape, "cents": round(euros * 100), "currency": "EUR"}


STORE = EventStore(event_store, EventCodec([PriceSet], {("PriceSet", 1): price_v1_to_v2}))


async def test_an_event_written_in_an_older_shape_is_read_in_todays(settings: Settings) -> None:
    inventory_db = create_engine(settings, "inventory")
    try:
        await read_back(inventory_db)
    finally:
        await inventory_db.dispose()


async def read_back(inventory_db: AsyncEngine) -> None:
    item_id = uuid.uuid4()
    now = datetime.now(UTC).replace(tzinfo=None)
    async with inventory_db.begin() as conn:
        # What the code of version 1 wrote, byte for byte.
        await conn.execute(
            text(
                "INSERT INTO event_store (event_id, stream_id, stream_type, version, event_type,"
                " schema_version, payload, actor, recorded_at)"
                " VALUES (UUID(), :s, 'item', 1, 'PriceSet', 1, :p, 'old code', :t)"
            ),
            {"s": str(item_id), "p": f'{{"item_id": "{item_id}", "price": 12.5}}', "t": now},
        )
        # And what today's code writes after it.
        today = PriceSet(item_id=item_id, cents=999, currency="SEK")
        await sql.run(
            conn, STORE.append([Pending(item_id, "item", 2, today)], Cause(actor="new"), now)
        )
    async with inventory_db.connect() as conn:
        stream = await STORE.stream(conn, item_id)
    assert [recorded.event for recorded in stream] == [
        PriceSet(item_id=item_id, cents=1250, currency="EUR"),
        today,
    ]
    async with inventory_db.connect() as conn:
        stored = await conn.scalar(
            text("SELECT schema_version FROM event_store WHERE stream_id = :s AND version = 1"),
            {"s": str(item_id)},
        )
    assert stored == 1  # read upcast, never rewritten
