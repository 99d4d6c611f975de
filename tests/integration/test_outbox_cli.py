"""``ticketing outbox`` and ``ticketing docs`` as real processes against the real stack."""

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

from tests.conftest import Stack
from tests.integration.flow import book, settled, setup_sale
from ticketing.contracts.events import OrderRejected
from ticketing.order.tables import orders
from ticketing.shared.db import create_engine
from ticketing.shared.migrations import upgrade
from ticketing.shared.outbox import build_row
from ticketing.shared.outbox_admin import OUTBOX
from ticketing.shared.settings import Settings


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
        assert report[service]["last_published_id"] >= 1


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


async def test_purge_deletes_only_published_rows_past_retention(databases: Settings) -> None:
    settings = dataclasses.replace(databases, db_prefix=databases.db_prefix + "purge_")
    await asyncio.to_thread(upgrade, settings, "order")
    engine = create_engine(settings, "order")
    now = datetime.now(UTC).replace(tzinfo=None)

    def row(published_at: datetime | None) -> dict[str, object]:
        event = OrderRejected(
            message_id=uuid.uuid4(),
            booking_id=uuid.uuid4(),
            event_id=uuid.uuid4(),
            reason="insufficient_capacity",
            rejected_at=datetime.now(UTC),
        )
        values = build_row(
            event, topic="t", key="k", aggregate_type="order", aggregate_id="a", correlation_id=None
        )
        return {**values, "created_at": now - timedelta(days=30), "published_at": published_at}

    try:
        async with engine.begin() as conn:
            await conn.execute(
                OUTBOX.insert(),
                [row(now - timedelta(days=10))] * 1
                + [row(now - timedelta(days=9)) for _ in range(2)]
                + [row(now - timedelta(hours=1))]
                + [row(None)],
            )
        code, out, err = await cli(
            settings, "outbox", "purge", "--service", "order", "--older-than", "7d", "--dry-run"
        )
        assert code == 0, err
        assert "would delete 3" in out
        code, out, err = await cli(
            settings, "outbox", "purge", "--service", "order", "--older-than", "7d"
        )
        assert code == 0, err
        assert "deleted 3" in out
        async with engine.connect() as conn:
            left = (
                (await conn.execute(select(OUTBOX.c.published_at).order_by(OUTBOX.c.id)))
                .scalars()
                .all()
            )
        assert len(left) == 2
        assert None in left  # pending rows are never purged, however old
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
    assert "message_id" in schemas["BookingRequested"]["properties"]
