"""Review: booking's upgrade to the event store (0003) on outbox rows it does not expect.

The 0002 outbox's ``aggregate_id`` is text in the database's case-insensitive collation, so
``'0AB1…'`` and ``'0ab1…'`` named the same booking for every query the old code ran. The upgrade
matches rows to bookings byte for byte and then drops the outbox, whatever it did not match:
a request the old relay had not sent yet is neither kept nor refused, and its booking waits
forever. Now rows are matched as the old code matched them, and a row no booking accounts for
makes the upgrade refuse before it changes anything (as order's does).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.test_booking_upgrade import (
    at_0002,
    engine,
    fill_as_0002,
    migrate,
    old_bookings,
    store_rows,
    tables,
)
from ticketing.shared.settings import Settings

__all__ = ["at_0002", "engine"]  # fixtures


async def test_an_unsent_request_whose_outbox_row_is_not_matched_is_kept_or_refused(
    at_0002: Settings, engine: AsyncEngine
) -> None:
    old = old_bookings()
    await fill_as_0002(engine, old)
    unsent = old[0]
    assert unsent.outbox == "pending"
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE outbox SET aggregate_id = UPPER(aggregate_id) WHERE aggregate_id = :b"),
            {"b": str(unsent.requested.booking_id)},
        )
        # The old code's own lookups still find it (the column folds case).
        found = await conn.scalar(
            text("SELECT COUNT(*) FROM outbox WHERE aggregate_id = :b AND published_at IS NULL"),
            {"b": str(unsent.requested.booking_id)},
        )
    assert found == 1
    await migrate(at_0002, "head")
    requested = [
        row
        for row in await store_rows(engine)
        if row.stream_id == unsent.requested.booking_id and row.version == 1
    ]
    assert [(row.event_id, row.published_at) for row in requested] == [
        (unsent.requested.message_id, None)
    ], "the unsent BookingRequested was dropped: it is stored under a new id as published"


async def test_an_outbox_row_of_no_booking_makes_the_upgrade_refuse_before_any_change(
    at_0002: Settings, engine: AsyncEngine
) -> None:
    await fill_as_0002(engine, old_bookings())
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, topic, message_key, "
                "event_type, payload, headers, created_at) VALUES (UUID(), 'booking', "
                "'no-such-booking', 't', 'k', 'BookingRequested', '{}', '{}', UTC_TIMESTAMP(6))"
            )
        )
    with pytest.raises(Exception, match="1 row\\(s\\) of no booking"):
        await migrate(at_0002, "head")
    assert {"outbox", "bookings"} <= await tables(engine)
    assert "event_store" not in await tables(engine)
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == "0002"
