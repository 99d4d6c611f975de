"""Wait until a service's database is at the revision this image's migrations end at.

The init container of every pod that has a database runs this (mounted from a ConfigMap), so no
service starts on a schema that the migration Job has not brought up yet: on a fresh install, or
with a new image whose migrations are still running. It polls and exits 0 once the database's
alembic revisions are exactly the image's heads; it never migrates anything itself.

Usage: python wait_for_schema.py SERVICE
"""

from __future__ import annotations

import asyncio
import sys
import time

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ticketing.shared.db.migrations import alembic_config
from ticketing.shared.settings import DATABASE_SERVICES, ServiceName, Settings

POLL_SECONDS = 2.0


async def applied_revisions(url: str) -> set[str]:
    """The revisions recorded in the database's ``alembic_version`` table."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return set(await conn.scalars(text("SELECT version_num FROM alembic_version")))
    finally:
        await engine.dispose()


def describe(error: Exception) -> str:
    """The error's class and MySQL message, never the URL (it holds the password)."""
    cause = getattr(error, "orig", None) or error
    return f"{type(cause).__name__}: {cause}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in DATABASE_SERVICES:
        print(f"usage: wait_for_schema.py {{{','.join(DATABASE_SERVICES)}}}", file=sys.stderr)
        return 2
    service: ServiceName = argv[0]
    settings = Settings.from_env()
    database = settings.database_name(service)
    heads = set(ScriptDirectory.from_config(alembic_config(settings, service)).get_heads())
    reported = ""
    while True:
        try:
            current = asyncio.run(applied_revisions(settings.database_url(service)))
            state = f"at {', '.join(sorted(current)) or 'no revision'}"
        except (SQLAlchemyError, OSError) as error:
            current, state = set(), f"not readable yet ({describe(error)})"
        if current == heads:
            print(f"{database}: at {', '.join(sorted(heads))}, the image's head", flush=True)
            return 0
        if state != reported:  # once per change, not once per poll
            print(f"{database}: {state}; waiting for {', '.join(sorted(heads))}", flush=True)
            reported = state
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
