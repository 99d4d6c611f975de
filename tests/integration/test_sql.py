"""Hot statements on the driver's cursor behave like SQLAlchemy's own: same transaction, same
exceptions, a lost connection invalidated (real MariaDB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.shared.db import sql
from ticketing.shared.db.engine import create_engine, is_duplicate_key, retried, run_transaction
from ticketing.shared.settings import Settings

metadata = MetaData()
notes = Table(
    "sql_probe_notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("text", String(200), nullable=False),
)
blobs = Table(
    "sql_probe_blobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)
INSERT = sql.insert_sql(notes, ("id", "text"))


@pytest.fixture
async def engine(databases: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(databases, "order")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await engine.dispose()


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(notes)) or 0)


async def test_statements_commit_with_the_transaction_and_escape_every_value(
    engine: AsyncEngine,
) -> None:
    hostile = "x'); DROP TABLE sql_probe_notes; --"

    async def work(conn: AsyncConnection) -> int:
        await sql.execute_many(conn, INSERT, [(1, hostile), (2, "two")])
        return await sql.execute(
            conn, "UPDATE sql_probe_notes SET text = %s WHERE id = %s", ["2!", 2]
        )

    assert await run_transaction(engine, work) == 1
    async with engine.connect() as conn:
        rows = await sql.fetch_all(conn, "SELECT id, text FROM sql_probe_notes ORDER BY id")
    assert rows == [(1, hostile), (2, "2!")]


async def test_a_failure_rolls_back_the_whole_transaction_as_sqlalchemys_own_error(
    engine: AsyncEngine,
) -> None:
    async def work(conn: AsyncConnection) -> None:
        await sql.execute_many(conn, INSERT, [(1, "one")])
        await sql.execute_many(conn, INSERT, [(2, "two"), (1, "one again")])

    with pytest.raises(IntegrityError) as caught:
        await run_transaction(engine, work)
    assert is_duplicate_key(caught.value)
    assert "one again" not in str(caught.value)  # parameters stay out of messages and logs
    assert await count(engine) == 0


async def test_a_lost_connection_is_invalidated_and_the_next_transaction_works(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as victim:
        connection_id = await victim.scalar(text("SELECT CONNECTION_ID()"))
        async with engine.connect() as killer:
            await killer.execute(text(f"KILL CONNECTION {int(connection_id)}"))
        with pytest.raises(OperationalError) as caught:
            await sql.fetch_all(victim, "SELECT 1")
        assert caught.value.connection_invalidated
        assert victim.invalidated
    await run_transaction(engine, lambda conn: sql.execute_many(conn, INSERT, [(3, "three")]))
    assert await count(engine) == 1


UPDATE = "UPDATE sql_probe_notes SET text = %s WHERE id >= %s"


async def test_a_whole_transaction_in_one_query_commits_and_counts_each_statement(
    engine: AsyncEngine,
) -> None:
    hostile = "x'); DROP TABLE sql_probe_notes; COMMIT; --"
    statements = [
        sql.Statement(INSERT, [(1, hostile), (2, "two"), (3, "100% three")], rows=True),
        sql.Statement(UPDATE, ["later; DELETE FROM sql_probe_notes", 2]),
    ]

    async def work(conn: AsyncConnection) -> list[int]:
        return await sql.commit_all(conn, statements)

    assert await retried(engine, work) == [3, 2]
    async with engine.connect() as conn:
        rows = await sql.fetch_all(conn, "SELECT id, text FROM sql_probe_notes ORDER BY id")
    later = "later; DELETE FROM sql_probe_notes"
    assert rows == [(1, hostile), (2, later), (3, later)]  # every value stayed a value


async def test_a_failing_statement_stops_the_query_and_nothing_of_it_stays(
    engine: AsyncEngine, databases: Settings
) -> None:
    # One pooled connection: every step below reuses the one the failed query ran on.
    engine = create_engine(replace(databases, db_pool_size=1, db_max_overflow=0), "order")
    statements = [
        sql.Statement(INSERT, [(1, "one")], rows=True),
        sql.Statement(INSERT, [(2, "two"), (1, "one again")], rows=True),
        sql.Statement(INSERT, [(3, "never run")], rows=True),
    ]
    with pytest.raises(IntegrityError) as caught:
        await retried(engine, lambda conn: sql.commit_all(conn, statements))
    assert is_duplicate_key(caught.value)
    assert "one again" not in str(caught.value)
    assert await count(engine) == 0  # the first insert was rolled back with the connection
    # The pooled connection is clean and usable: the next transaction commits alone.
    one = [sql.Statement(INSERT, [(4, "four")], rows=True)]
    await retried(engine, lambda conn: sql.commit_all(conn, one))
    assert await count(engine) == 1
    await engine.dispose()


async def test_a_statement_cancelled_midway_leaves_the_cancellation_and_a_working_pool(
    engine: AsyncEngine,
) -> None:
    """The driver closes a connection whose statement was cancelled; handing it back to the
    pool must discard it quietly, so the caller sees its CancelledError and nothing else."""

    async def slow() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))  # a transaction begun: closing would roll back
            await sql.fetch_all(conn, "SELECT SLEEP(5)", [])

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=3)
    await run_transaction(engine, lambda conn: sql.execute(conn, INSERT, [7, "after"]))
    assert await count(engine) == 1


NASTY = [
    "x'); DROP TABLE sql_probe_notes; --",
    "back\\slash\\' and \\\\ double",
    'quote" \'single\' \\"both\\"',
    "nul\0, newline\n, return\r, ctrl-z\x1a",
    "100% of %s and %%s",
    "emoji \U0001f39f and accents éàü",
    "\\",
    "'",
]


async def round_trip(engine: AsyncEngine, *, no_backslash_escapes: bool) -> list[tuple[int, str]]:
    async def work(conn: AsyncConnection) -> None:
        if no_backslash_escapes:
            await conn.execute(
                text("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
            )
        rows = list(enumerate(NASTY))
        await sql.commit_all(conn, [sql.Statement(INSERT, rows, rows=True)])

    await retried(engine, work)
    async with engine.connect() as conn:
        return await sql.fetch_all(conn, "SELECT id, text FROM sql_probe_notes ORDER BY id")


async def test_every_character_survives_the_rendered_query(engine: AsyncEngine) -> None:
    assert await round_trip(engine, no_backslash_escapes=False) == list(enumerate(NASTY))


async def test_a_server_without_backslash_escapes_gets_the_drivers_quoting(
    engine: AsyncEngine, databases: Settings
) -> None:
    # One pooled connection, thrown away after: the session's sql_mode must not leak into the
    # fixture's pool (which made the table and drops it).
    engine = create_engine(replace(databases, db_pool_size=1, db_max_overflow=0), "order")
    try:
        assert await round_trip(engine, no_backslash_escapes=True) == list(enumerate(NASTY))
    finally:
        await engine.dispose()


EVERY_BYTE = bytes(range(256))
BLOBS = [EVERY_BYTE, EVERY_BYTE[::-1], b"", b"'", b"\\", b"\\'", b"' OR 1=1 -- ", b'\0\x1a\r\n"%']


async def test_bytes_parameters_are_stored_as_they_are(engine: AsyncEngine) -> None:
    """Through the driver's parameters and through a rendered query alike. aiomysql 0.3 writes
    bytes with a function PyMySQL 1.2 removed (hence the pin below 1.2): there both fail."""
    insert = sql.insert_sql(blobs, ("id", "data"))
    rows = list(enumerate(BLOBS))
    await run_transaction(engine, lambda conn: sql.execute_many(conn, insert, rows))
    rendered = [(100 + number, data) for number, data in rows]
    statement = sql.Statement(insert, rendered, rows=True)
    await retried(engine, lambda conn: sql.commit_all(conn, [statement]))
    async with engine.connect() as conn:
        stored = await sql.fetch_all(conn, "SELECT id, data FROM sql_probe_blobs ORDER BY id")
    assert stored == [*rows, *rendered]


PARAMETERS = st.lists(
    st.one_of(
        st.text(st.sampled_from("\\\0\n\r\x1a\"'%") | st.characters(), max_size=50),
        st.integers(),
        st.booleans(),
        st.none(),
        st.datetimes(),
        st.decimals(allow_nan=False, allow_infinity=False),
        st.floats(allow_nan=False, allow_infinity=False),
        st.binary(max_size=50),
    ),
    min_size=1,
    max_size=10,
)


async def test_render_writes_what_the_live_driver_connection_writes(engine: AsyncEngine) -> None:
    """On a connection to the real server, whose status decides how the driver quotes."""
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        async with driver.cursor() as cursor:

            @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
            @given(params=PARAMETERS)
            def same_text(params: list[object]) -> None:
                query = "SELECT " + sql.placeholders(len(params))
                assert sql.render(cursor, query, params) == cursor.mogrify(query, tuple(params))

            same_text()
