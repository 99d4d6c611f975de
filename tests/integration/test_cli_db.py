"""``ticketing db upgrade`` creates a missing database and migrates it, as a real process."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid

from alembic import command
from sqlalchemy import text

from tests.harness.databases import drop_databases, head_of
from tests.integration.cli_process import run_cli
from ticketing.booking import idempotency
from ticketing.booking.idempotency import KeyClaim
from ticketing.shared.db.engine import create_engine
from ticketing.shared.db.migrations import alembic_config, upgrade
from ticketing.shared.settings import Settings


async def test_db_upgrade_creates_and_migrates_then_is_a_no_op(base_settings: Settings) -> None:
    settings = dataclasses.replace(
        base_settings, db_prefix=f"ticketing_cli_{uuid.uuid4().hex[:8]}_"
    )
    try:
        first = await asyncio.to_thread(
            run_cli, "db", "upgrade", "inventory", prefix=settings.db_prefix
        )
        assert first.returncode == 0, first.stderr
        assert "created and migrated" in first.stdout
        second = await asyncio.to_thread(run_cli, "db", "upgrade", prefix=settings.db_prefix)
        assert second.returncode == 0, second.stderr
        assert f"{settings.db_prefix}inventory: migrated" in second.stdout

        engine = create_engine(settings, "inventory")
        try:
            async with engine.connect() as conn:
                tables = set((await conn.execute(text("SHOW TABLES"))).scalars())
                version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        finally:
            await engine.dispose()
        assert {"venues", "events", "reservations", "event_store"} <= tables
        assert version == head_of("inventory")
    finally:
        await drop_databases(settings)


def test_unknown_service_and_bad_settings_fail_clearly() -> None:
    unknown = run_cli("db", "upgrade", "payments", prefix="ticketing_")
    assert unknown.returncode == 2
    assert "invalid choice" in unknown.stderr
    env = {**os.environ, "TICKETING_INVENTORY_PORT": "eighty"}
    bad = subprocess.run(
        [sys.executable, "-m", "ticketing", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "TICKETING_INVENTORY_PORT" in bad.stderr


async def test_db_upgrade_takes_an_existing_booking_database_to_keys_per_client(
    base_settings: Settings,
) -> None:
    """Revision 0002 on a database that holds keys of revision 0001: they name no client, so
    they are deleted; keys are then per client and byte for byte, and the downgrade works."""
    settings = dataclasses.replace(
        base_settings, db_prefix=f"ticketing_cli_{uuid.uuid4().hex[:8]}_"
    )
    try:
        await asyncio.to_thread(upgrade, settings, "booking", "0001")
        engine = create_engine(settings, "booking")
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO idempotency_keys (idem_key, fingerprint, created_at) "
                        "VALUES ('abc', 'f', UTC_TIMESTAMP(6))"
                    )
                )
            upgraded = await asyncio.to_thread(
                run_cli, "db", "upgrade", "booking", prefix=settings.db_prefix
            )
            assert upgraded.returncode == 0, upgraded.stderr
            async with engine.begin() as conn:
                assert await conn.scalar(
                    text("SELECT version_num FROM alembic_version")
                ) == head_of("booking")
                assert await conn.scalar(text("SELECT COUNT(*) FROM idempotency_keys")) == 0
                for client, key in [("a", "abc"), ("a", "ABC"), ("a", "abc "), ("b", "abc")]:
                    assert await idempotency.claim_key(conn, KeyClaim.new(client, key), "f")
                assert not await idempotency.claim_key(conn, KeyClaim.new("a", "abc"), "f")
            await asyncio.to_thread(command.downgrade, alembic_config(settings, "booking"), "0001")
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == "0001"
                assert await conn.scalar(text("SELECT COUNT(*) FROM idempotency_keys")) == 0
        finally:
            await engine.dispose()
    finally:
        await drop_databases(settings)
