"""``ticketing events export --until T`` waits for the transactions begun before ``T``, so that
an export ``--until T`` and a later one ``--since T`` (the way an incremental export runs)
together hold every event: whatever the session's time zone, as the deployed user, and for a
settlement that read its time before it had a connection."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.harness.databases import own_databases, sent_uncommitted
from tests.integration.booking_db import customer, pending_bookings
from tests.integration.cli_process import run_cli
from tests.integration.own_inventory import lines, settings
from tests.unit.booking_world import confirmation
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.repository import STORE
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.cli import events as events_cli
from ticketing.cli.events import wait_for_writers
from ticketing.contracts.inventory import VenueCreate
from ticketing.inventory import repository as repo
from ticketing.inventory.domain import decide_register_venue
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.shared.clock import utcnow
from ticketing.shared.db.engine import create_engine, create_server_engine
from ticketing.shared.ids import new_id
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.settings import Settings
from ticketing.shared.store.eventstore import Cause

__all__ = ["settings"]  # fixture
CAUSE = Cause(actor="review")


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


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


async def test_the_wait_sees_a_writer_begun_before_until_whatever_the_session_time_zone(
    settings: Settings,
) -> None:
    """``innodb_trx.trx_started`` is in the server's system time zone, not the session's: on
    a session five hours behind UTC (a server or connection ``time_zone`` setting) the
    export must still wait for a venue being registered before ``--until``."""
    engine = create_engine(settings, "inventory")
    try:
        async with engine.begin() as held, engine.connect() as conn:
            slow = decide_register_venue(new_id(), "Slow", "Road", 10)
            await sent_uncommitted(held, lambda uow: repo.register_venue(uow, slow, CAUSE))
            await conn.execute(text("SET time_zone = '-05:00'"))
            with pytest.raises(events_cli.WritersStillOpen):
                await events_cli.wait_for_writers(
                    conn, utc_now() + timedelta(seconds=2), seconds=0.5
                )
    finally:
        await engine.dispose()


async def test_the_wait_ignores_a_writer_begun_after_until_whatever_the_session_time_zone(
    settings: Settings,
) -> None:
    """A transaction begun a minute after ``--until`` records nothing before it; on a session
    five hours ahead of UTC the export must not wait for it (under load one always is open)."""
    engine = create_engine(settings, "inventory")
    try:
        until = utc_now() - timedelta(minutes=1)
        async with engine.begin() as held, engine.connect() as conn:
            later = decide_register_venue(new_id(), "Later", "Road", 10)
            await sent_uncommitted(held, lambda uow: repo.register_venue(uow, later, CAUSE))
            await conn.execute(text("SET time_zone = '+05:00'"))
            await events_cli.wait_for_writers(conn, until, seconds=0.5)
    finally:
        await engine.dispose()


async def test_an_export_until_works_with_the_privileges_the_deployment_grants(
    settings: Settings,
) -> None:
    """deploy/mysql/grants.sql gives the ticketing user ALL on its databases and nothing
    global: no PROCESS, which information_schema.innodb_trx requires."""
    user, password = f"rv2_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    pattern = settings.db_prefix.replace("_", "\\_") + "%"
    server = create_server_engine(settings)
    try:
        async with server.begin() as conn:
            await conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"))
            await conn.execute(text(f"GRANT ALL PRIVILEGES ON `{pattern}`.* TO '{user}'@'%'"))
        engine = create_engine(settings, "inventory")
        try:
            await InventoryService(SqlInventoryRecords(engine), engine).create_venue(
                VenueCreate("Hall", "Road", 10), CAUSE
            )
        finally:
            await engine.dispose()
        url = make_url(settings.mysql_url).set(username=user, password=password)
        env = {
            **os.environ,
            "TICKETING_DB_PREFIX": settings.db_prefix,
            "TICKETING_MYSQL_URL": url.render_as_string(hide_password=False),
        }
        until = datetime.now(UTC).isoformat()
        export = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "ticketing",
                "events",
                "export",
                "--service",
                "inventory",
                "--until",
                until,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert export.returncode == 0, export.stderr[-2000:]
        assert [e["data"]["name"] for e in lines(export.stdout)] == ["Hall"]
    finally:
        async with server.begin() as conn:
            await conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        await server.dispose()


@pytest.fixture
async def own_booking_db() -> AsyncIterator[Settings]:
    """A booking database of this test's own: no running relay publishes its bookings, so no
    saga settles them behind the test's back."""
    async with own_databases("booking") as settings:
        yield settings


async def exported(settings: Settings, **bounds: Any) -> set[tuple[uuid.UUID, int]]:
    """What ``events export --service booking`` with ``bounds`` writes: (stream, version)."""
    engine = create_engine(settings, "booking")
    try:
        async with engine.connect() as conn:
            if bounds.get("until") is not None:
                await wait_for_writers(conn, bounds["until"], seconds=5)
            page = await STORE.page(conn, after=0, limit=100_000, **bounds)
    finally:
        await engine.dispose()
    return {(r.stream_id, r.version) for r in page}


async def test_a_settlement_waiting_for_a_connection_is_in_one_of_two_split_exports(
    own_booking_db: Settings,
) -> None:
    databases = own_booking_db
    one_connection = dataclasses.replace(databases, db_pool_size=1, db_max_overflow=0)
    engine = create_engine(one_connection, "booking")
    service = BookingService(
        SqlBookingRecords(engine, consumer=CONSUMER), cast(Any, None), max_tickets=10
    )
    try:
        (booking,) = await pending_bookings(engine, await customer(service), 1)
        async with engine.connect() as busy:  # the pool's one connection, in use
            await busy.execute(text("SELECT 1"))
            settling = asyncio.create_task(
                service.apply_saga_answers([Received(confirmation(booking.id), None)])
            )
            await asyncio.sleep(0.2)
            split = utcnow()  # after the settlement read its time
            await asyncio.sleep(1.5)  # its transaction has not begun by split + 1 s
            before = await exported(databases, until=split)
        await settling
        after = await exported(databases, since=split)
    finally:
        await engine.dispose()
    assert (booking.id, 1) in before
    assert (booking.id, 2) in before | after, "the settlement is in neither export"
