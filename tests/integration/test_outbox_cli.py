"""``ticketing outbox`` (over the event stores) and ``ticketing docs`` as real processes against
the real stack."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from tests.harness.serving import Stack
from tests.integration.flow import book, settled, setup_sale
from ticketing.booking.domain import BookingRejected
from ticketing.booking.repository import STORE
from ticketing.contracts.events import PUBLICATIONS, BookingRequested
from ticketing.order.tables import orders
from ticketing.shared.clock import utcnow
from ticketing.shared.db import sql
from ticketing.shared.db.engine import create_engine
from ticketing.shared.db.migrations import upgrade
from ticketing.shared.settings import Settings
from ticketing.shared.store.eventstore import Cause, Pending


async def cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "TICKETING_DB_PREFIX": settings.db_prefix,
        "TICKETING_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ticketing",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_status_reports_each_outbox(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=5)
    accepted = (await book(stack, customer_id, event_id)).json()
    await settled(stack, accepted["id"])
    code, out, err = await cli(stack.settings, "outbox", "status", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"booking", "order"}
    for service in ("booking", "order"):
        assert report[service]["total"] >= 1
        assert report[service]["last_published_position"] >= 1


async def test_replay_republishes_with_original_ids_and_changes_nothing(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=5)
    accepted = (await book(stack, customer_id, event_id, 2)).json()
    assert (await settled(stack, accepted["id"]))["status"] == "CONFIRMED"

    selection = ["--service", "booking", "--aggregate-id", accepted["id"]]
    code, out, err = await cli(stack.settings, "outbox", "replay", *selection, "--dry-run")
    assert code == 0, err
    assert "would replay 1 event(s)" in out
    code, out, err = await cli(stack.settings, "outbox", "replay", *selection)
    assert code == 0, err
    assert "replayed 1 event(s)" in out

    # A later booking for the same event shares the replay's partition: once it is settled,
    # the replayed message has been consumed too.
    later = (await book(stack, customer_id, event_id, 1)).json()
    assert (await settled(stack, later["id"]))["status"] == "CONFIRMED"
    left = (await stack.inventory.get(f"/api/v1/events/{event_id}")).json()["left_capacity"]
    assert left == 2
    async with stack.engines["order"].connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(orders)
            .where(orders.c.booking_id == uuid.UUID(accepted["id"]))
        )
    assert count == 1


async def test_status_counts_published_events_and_purge_is_gone(databases: Settings) -> None:
    """Status counts the events of published types, pending or sent, never internal ones;
    there is no purge: events are never deleted."""
    settings = dataclasses.replace(databases, db_prefix=databases.db_prefix + "status_")
    await asyncio.to_thread(upgrade, settings, "booking")
    engine = create_engine(settings, "booking")
    stream = uuid.uuid4()
    requested = BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=stream,
        customer_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        ticket_count=1,
        unit_price="1.00",
        total_price="1.00",
        requested_at=datetime.now(UTC),
    )
    rejected = BookingRejected(booking_id=stream, reason="test", rejected_at=datetime.now(UTC))
    events = [
        Pending(stream, "booking", 1, requested),
        Pending(stream, "booking", 2, rejected),
    ]
    try:
        async with engine.begin() as conn:
            await sql.run(conn, STORE.append(events, Cause("test"), utcnow() - timedelta(hours=1)))
        code, out, err = await cli(settings, "outbox", "status", "--service", "booking", "--json")
        assert code == 0, err
        report = json.loads(out)["booking"]
        assert (report["total"], report["pending"]) == (1, 1)
        assert report["oldest_pending_age_seconds"] >= 3600
        assert report["last_published_position"] is None
        code, _, err = await cli(settings, "outbox", "purge", "--service", "booking")
        assert code == 2
        assert "invalid choice: 'purge'" in err
        code, _, err = await cli(
            settings, "outbox", "replay", "--service", "booking", "--aggregate-id", "x' OR 1"
        )
        assert code == 2
        assert "--aggregate-id" in err
    finally:
        await engine.dispose()


async def test_asyncapi_document_lists_every_topic_and_event(
    base_settings: Settings, tmp_path: Path
) -> None:
    target = tmp_path / "asyncapi.json"
    code, _, err = await cli(base_settings, "docs", "asyncapi", "--output", str(target))
    assert code == 0, err
    document = json.loads(target.read_text())
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {"ticketing.bookings", "ticketing.orders"} <= addresses
    schemas = document["components"]["schemas"]
    assert {"BookingRequested", "OrderConfirmed", "OrderRejected"} <= set(schemas)
    assert set(PUBLICATIONS) <= set(schemas)  # every published event type is documented
    assert "message_id" in schemas["BookingRequested"]["properties"]
