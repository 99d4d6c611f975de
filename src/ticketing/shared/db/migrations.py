"""Alembic, one migration environment per service under ``alembic/<service>``.

``upgrade`` first creates the service's database when it is missing. It is synchronous (each
env.py runs its own event loop); async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from ticketing.shared.db.engine import ensure_database
from ticketing.shared.settings import ServiceName, Settings


def alembic_root(settings: Settings | None = None) -> Path:
    """``TICKETING_ALEMBIC_DIR``: the folder of the per-service environments."""
    return Path((settings or Settings.from_env()).alembic_dir).resolve()


def alembic_config(settings: Settings, service: ServiceName) -> Config:
    location = alembic_root(settings) / service
    if not (location / "env.py").is_file():
        raise FileNotFoundError(
            f"no migrations for {service} at {location}; set TICKETING_ALEMBIC_DIR"
        )
    config = Config()
    config.set_main_option("script_location", str(location))
    config.attributes["settings"] = settings
    config.attributes["service"] = service
    return config


def upgrade(settings: Settings, service: ServiceName, revision: str = "head") -> bool:
    """Create the database if needed and migrate it to ``revision``; True if it was created."""
    created = asyncio.run(ensure_database(settings, service))
    command.upgrade(alembic_config(settings, service), revision)
    return created


def run_environment(service: ServiceName) -> None:
    """The body of every ``alembic/<service>/env.py`` (online and ``--sql`` offline modes)."""
    from alembic import context
    from sqlalchemy import Connection, pool
    from sqlalchemy.ext.asyncio import create_async_engine

    config = context.config
    settings: Settings = config.attributes.get("settings") or Settings.from_env()
    url = settings.database_url(service)

    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: Connection) -> None:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run())
