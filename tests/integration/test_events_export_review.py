"""Hostile cases for ``ticketing events export --until``: the wait for transactions begun
before it, on a session whose time zone is not the server's, and as the deployed user."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.harness import sent_uncommitted
from tests.integration.test_events_cli import lines, settings
from ticketing.cli import events as events_cli
from ticketing.contracts.inventory import VenueCreate
from ticketing.inventory import repository as repo
from ticketing.inventory.domain import decide_register_venue
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.shared.db import create_engine, create_server_engine
from ticketing.shared.eventstore import Cause
from ticketing.shared.ids import new_id
from ticketing.shared.settings import Settings

__all__ = ["settings"]  # fixture
CAUSE = Cause(actor="review")


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


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
