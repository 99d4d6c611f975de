"""Hot statements on the driver's cursor, inside SQLAlchemy's connection and transaction.

SQLAlchemy's work around each statement (cache key, compiled-cache lookup, execution context,
result wrapping, a greenlet switch) cost about 80 µs of CPU and 150 µs of wall time per
statement on these machines: more than the statement itself. The few fixed statements every
booking passes through (the inbox and outbox inserts, the relay's read and mark, the booking,
order and reservation writes) are therefore plain SQL run on the aiomysql cursor of the
connection SQLAlchemy checked out. Nothing else changes:

- they run inside SQLAlchemy's transaction, which commits or rolls back as before;
- the driver escapes every parameter, as it does for SQLAlchemy's own statements;
- a failure is raised as the SQLAlchemy exception SQLAlchemy would have raised (``IntegrityError``
  for a duplicate key, ``OperationalError`` for a lost server, the connection invalidated), so
  retries, duplicate-key checks and disconnect handling see no difference.

Values are passed the way the driver takes them: UUIDs as strings, datetimes naive UTC.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from pymysql.err import Error as DriverError
from pymysql.err import OperationalError as DriverOperationalError
from sqlalchemy import Table
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

_preparer = mysql.dialect().identifier_preparer


def quote(name: str) -> str:
    """A table or column name as MySQL expects it quoted."""
    return str(_preparer.quote(name))


@functools.cache
def insert_sql(table: Table, columns: tuple[str, ...]) -> str:
    """``INSERT`` of one row into ``columns`` of ``table`` (built once per table and columns; a
    column the table does not have raises KeyError); run with :func:`execute_many` for several
    rows (the driver sends them as one multi-row statement)."""
    names = ", ".join(quote(table.c[column].name) for column in columns)
    marks = placeholders(len(columns))
    return f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})"  # noqa: S608 - our names


def placeholders(count: int) -> str:
    """``%s, %s, ...`` for an ``IN (...)`` list of ``count`` values."""
    return ", ".join(["%s"] * count)


async def execute(conn: AsyncConnection, sql: str, params: Sequence[Any] = ()) -> int:
    """Run one statement; the number of rows it changed."""
    count, _ = await _run(conn, sql, params, many=False, fetch=False)
    return count


async def execute_many(conn: AsyncConnection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run an ``INSERT`` for every row of ``rows``, as one multi-row statement."""
    count, _ = await _run(conn, sql, rows, many=True, fetch=False)
    return count


async def fetch_all(
    conn: AsyncConnection, sql: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """Run a query; its rows as tuples, in the order of its select list."""
    _, rows = await _run(conn, sql, params, many=False, fetch=True)
    return rows


async def _run(
    conn: AsyncConnection, sql: str, params: Any, *, many: bool, fetch: bool
) -> tuple[int, list[tuple[Any, ...]]]:
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None, "a checked-out connection has its driver connection"
    try:
        async with driver.cursor() as cursor:
            if many:
                await cursor.executemany(sql, params)
            else:
                await cursor.execute(sql, params)
            rows = list(await cursor.fetchall()) if fetch else []
            return int(cursor.rowcount), rows
    except DriverError as error:
        dialect = conn.dialect
        lost = isinstance(error, DriverOperationalError) and dialect.is_disconnect(
            error, None, None
        )
        if lost:
            await conn.invalidate()
        raise DBAPIError.instance(
            sql,
            None,
            error,
            DriverError,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=dialect,
        ) from error
