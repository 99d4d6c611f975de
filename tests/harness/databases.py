"""Databases of a test's own, migrated to a chosen revision and dropped afterwards, and what
the tests write into them by hand."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.shared.db import sql
from ticketing.shared.db.engine import create_engine, create_server_engine
from ticketing.shared.db.migrations import alembic_config, alembic_root, upgrade
from ticketing.shared.db.unit_of_work import UnitOfWork
from ticketing.shared.settings import ServiceName, Settings


def head_of(service: ServiceName) -> str:
    """The newest revision of ``service``'s migrations: where an upgrade to head stops, named
    without a number a new migration would have to change here."""
    head = ScriptDirectory(str(alembic_root() / service)).get_current_head()
    assert head is not None
    return head


@contextlib.asynccontextmanager
async def own_databases(*services: ServiceName, revision: str = "head") -> AsyncIterator[Settings]:
    """Settings naming databases of the caller's own for ``services``, migrated to ``revision``
    (no relay or consumer of a running stack touches them); dropped afterwards."""
    settings = dataclasses.replace(
        Settings.from_env(), db_prefix=f"ticketing_own_{uuid.uuid4().hex[:8]}_"
    )
    try:
        for service in services:
            await asyncio.to_thread(upgrade, settings, service, revision)
        yield settings
    finally:
        await drop_databases(settings)


@contextlib.asynccontextmanager
async def engine_of(settings: Settings, service: ServiceName) -> AsyncIterator[AsyncEngine]:
    """An engine on ``service``'s database named by ``settings``; disposed afterwards."""
    engine = create_engine(settings, service)
    try:
        yield engine
    finally:
        await engine.dispose()


async def run_alembic(
    settings: Settings, service: ServiceName, step: Callable[..., object], to: str
) -> None:
    """Alembic's ``step`` (``command.upgrade``, ``downgrade`` or ``stamp``) to ``to`` on
    ``service``'s database, in a thread: each env.py run starts an event loop of its own."""
    await asyncio.to_thread(step, alembic_config(settings, service), to)


async def revision(engine: AsyncEngine) -> str | None:
    """The revision alembic records in ``engine``'s database."""
    async with engine.connect() as conn:
        found: str | None = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        return found


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(text("SHOW TABLES"))).scalars())


async def drop_databases(settings: Settings) -> None:
    """Drop every database named with this run's prefix."""
    engine = create_server_engine(settings)
    try:
        async with engine.begin() as conn:
            rows = await conn.execute(
                text(
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :p"
                ),
                {"p": settings.db_prefix.replace("_", r"\_") + "%"},
            )
            for (name,) in rows.all():
                await conn.execute(text(f"DROP DATABASE `{name}`"))
    finally:
        await engine.dispose()


async def sent_uncommitted(conn: AsyncConnection, record: Callable[[UnitOfWork], object]) -> None:
    """Send the writes ``record`` queues in a unit of work on ``conn`` without committing them:
    a transaction held open, as a slow writer's is."""
    uow = UnitOfWork(conn)
    record(uow)
    for statement in uow._writes:
        await sql.run(conn, statement)


def order_records(engine: AsyncEngine) -> Any:
    """Order's records in ``engine``'s database, as its app wires them."""
    from ticketing.order.repository import SqlOrderRecords
    from ticketing.order.service import CONSUMER

    return SqlOrderRecords(engine, consumer=CONSUMER)
