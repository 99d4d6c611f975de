"""Hostile cases for ``ticketing events export`` and ``ticketing projections verify``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from tests.harness import sent_uncommitted
from tests.integration.test_cli_db import run_cli
from tests.integration.test_events_cli import lines, settings
from ticketing.cli import events as events_cli
from ticketing.contracts.inventory import VenueCreate
from ticketing.inventory import repository as repo
from ticketing.inventory.domain import SeatsReserved, decide_register_venue
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.shared import sql
from ticketing.shared.clock import utcnow
from ticketing.shared.db import create_engine
from ticketing.shared.eventstore import Cause, Pending
from ticketing.shared.ids import new_id
from ticketing.shared.settings import Settings

__all__ = ["settings"]  # fixture
CAUSE = Cause(actor="review")


async def test_exports_split_at_a_moment_together_hold_every_event(settings: Settings) -> None:
    """An export ``--until T`` and a later one ``--since T`` (the way an incremental export
    runs) must between them hold every event. An event's time is taken before its transaction
    commits, so the first waits for the transactions begun before T; one that commits while it
    waits is in it."""
    engine = create_engine(settings, "inventory")
    try:
        async with engine.begin() as conn:  # a venue being registered, not yet committed
            slow = decide_register_venue(new_id(), "Slow", "Road", 10)
            await sent_uncommitted(conn, lambda uow: repo.register_venue(uow, slow, CAUSE))
            await InventoryService(SqlInventoryRecords(engine), engine).create_venue(
                VenueCreate("Fast", "Road", 10), CAUSE
            )
            split = datetime.now(UTC).isoformat()
            until = asyncio.create_task(
                asyncio.to_thread(
                    run_cli,
                    "events",
                    "export",
                    "--service",
                    "inventory",
                    "--until",
                    split,
                    prefix=settings.db_prefix,
                )
            )
            await asyncio.sleep(1.5)  # the export is waiting for this transaction meanwhile
            assert not until.done()
        first = await until
        second = await asyncio.to_thread(
            run_cli,
            "events",
            "export",
            "--service",
            "inventory",
            "--since",
            split,
            prefix=settings.db_prefix,
        )
    finally:
        await engine.dispose()
    assert first.returncode == 0, first.stderr
    assert {e["data"].get("name") for e in lines(first.stdout)} == {"Slow", "Fast"}
    assert lines(second.stdout) == []


async def test_an_export_gives_up_on_a_transaction_that_stays_open(settings: Settings) -> None:
    """Rather than hand out a range with events missing, the export says why it cannot."""
    engine = create_engine(settings, "inventory")
    try:
        async with engine.begin() as held, engine.connect() as conn:
            slow = decide_register_venue(new_id(), "Stuck", "Road", 10)
            await sent_uncommitted(held, lambda uow: repo.register_venue(uow, slow, CAUSE))
            with pytest.raises(events_cli.WritersStillOpen, match="still open"):
                await events_cli.wait_for_writers(
                    conn, datetime.now(UTC).replace(tzinfo=None), seconds=0.5
                )
    finally:
        await engine.dispose()


async def test_verify_reports_a_stream_that_cannot_be_folded_instead_of_crashing(
    settings: Settings,
) -> None:
    """A reservation event on a stream that was never scheduled (say, a reservation row of an
    event deleted by hand before the upgrade) is a difference to print, with exit code 1."""
    engine = create_engine(settings, "inventory")
    try:
        orphan = SeatsReserved(
            event_id=uuid.uuid4(), booking_id=uuid.uuid4(), ticket_count=1, left_capacity=0
        )
        statement = repo.STORE.append(
            [Pending(orphan.event_id, "event", 1, orphan)], CAUSE, utcnow()
        )
        async with engine.begin() as conn:
            await sql.run(conn, statement)
    finally:
        await engine.dispose()
    verify = await asyncio.to_thread(run_cli, "projections", "verify", prefix=settings.db_prefix)
    assert verify.returncode == 1
    assert "Traceback" not in verify.stderr, verify.stderr
    assert str(orphan.event_id) in verify.stdout
    rebuild = await asyncio.to_thread(
        run_cli, "projections", "rebuild", "--service", "inventory", prefix=settings.db_prefix
    )
    assert rebuild.returncode == 1
    assert "Traceback" not in rebuild.stderr, rebuild.stderr
    assert f"not rebuilt: stream {orphan.event_id}" in rebuild.stdout
