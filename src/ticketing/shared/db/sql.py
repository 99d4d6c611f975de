"""Hot statements on the driver's cursor, inside SQLAlchemy's connection and transaction.

SQLAlchemy's work around each statement (cache key, compiled-cache lookup, execution context,
result wrapping, a greenlet switch) costs more than a short statement itself (ADR 21 and
docs/performance-log.md have the measurements), so the few fixed statements every booking passes
through (the inbox and outbox inserts, the relay's read and mark, the booking, order and
reservation writes) are plain SQL run on the aiomysql cursor of the connection SQLAlchemy
checked out. Nothing else changes:

- they run inside SQLAlchemy's transaction, which commits or rolls back as before;
- every value is a parameter, escaped as the driver escapes SQLAlchemy's own statements (the
  driver's own escaping, or for :func:`commit_all` the same text written by :func:`literal`);
- a failure is raised as the SQLAlchemy exception SQLAlchemy would have raised (``IntegrityError``
  for a duplicate key, ``OperationalError`` for a lost server, the connection invalidated), so
  retries, duplicate-key checks and disconnect handling see no difference.

Values are passed the way the driver takes them: UUIDs as strings, datetimes naive UTC.

A transaction whose statements need no answer before the commit (a group of bookings, a
consumer's batch) is sent whole by :func:`commit_all`: its statements and the ``COMMIT`` as one
multi-statement query, one round trip instead of one per statement. Its values are rendered by
:func:`literal`, which writes exactly what the driver's escaping writes for the types every
booking carries (strings, integers, decimals, naive datetimes, NULL) and hands every other value
to the driver, because the driver escapes a string a character at a time. Property tests keep
the two identical for every type, and a value the driver would write as something else (a
Decimal NaN, a bytearray) is refused instead.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from pymysql.constants.SERVER_STATUS import SERVER_STATUS_NO_BACKSLASH_ESCAPES
from pymysql.err import Error as DriverError
from pymysql.err import NotSupportedError as DriverNotSupportedError
from pymysql.err import OperationalError as DriverOperationalError
from pymysql.err import ProgrammingError as DriverProgrammingError
from sqlalchemy import Table
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.shared import tracing

_preparer = mysql.dialect().identifier_preparer
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement with its parameters. With ``rows``, ``sql`` is an :func:`insert_sql` and
    ``params`` holds one parameter tuple per row (sent as one multi-row ``INSERT``)."""

    sql: str
    params: Sequence[Any] = ()
    rows: bool = False


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


def insert_row(table: Table, row: Mapping[str, Any]) -> Statement:
    """The ``INSERT`` of one row given as column -> value (UUIDs passed as their text, as the
    driver takes them)."""
    values = tuple(str(v) if isinstance(v, uuid.UUID) else v for v in row.values())
    return Statement(insert_sql(table, tuple(row)), [values], rows=True)


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


async def run(conn: AsyncConnection, statement: Statement) -> int:
    """Run ``statement`` on its own; the number of rows it changed."""
    if statement.rows:
        return await execute_many(conn, statement.sql, statement.params)
    return await execute(conn, statement.sql, statement.params)


async def commit_all(conn: AsyncConnection, statements: Sequence[Statement]) -> list[int]:
    """Run ``statements``, then ``COMMIT``, as one multi-statement query (aiomysql always enables
    multi-statements on its connections); the number of rows each statement changed.

    For :class:`ticketing.shared.db.unit_of_work.UnitOfWork`. When a statement fails the server runs
    none after it, the commit included, and raises its error here; the connection then goes back
    to the pool uncommitted and is rolled back there.
    """

    async def send(cursor: Any) -> list[int]:
        script = ";\n".join([*(_render(cursor, statement) for statement in statements), "COMMIT"])
        await cursor.execute(script)  # no parameters: the script is rendered already
        counts = [int(cursor.rowcount)]
        while await cursor.nextset():
            counts.append(int(cursor.rowcount))
        return counts[: len(statements)]

    return await _on_cursor(conn, "; ".join(s.sql for s in statements) + "; COMMIT", send)


# The driver's escapes (pymysql's ``escape_string``), the backslash first so that the
# backslashes the later ones add are not doubled.
_ESCAPES = (
    ("\\", "\\\\"),
    ("\0", "\\0"),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\x1a", "\\Z"),
    ('"', '\\"'),
    ("'", "\\'"),
)


def escape_string(value: str) -> str:
    """``value`` escaped for a quoted MySQL string literal, exactly as the driver escapes it,
    with one C-speed scan per special character instead of the driver's translation a
    character at a time."""
    for char, escaped in _ESCAPES:
        if char in value:
            value = value.replace(char, escaped)
    return value


def literal(value: Any, driver: Any) -> str:
    """``value`` as an SQL literal, the same text as ``driver.escape(value)`` (``driver``: an
    aiomysql connection whose server accepts backslash escapes; :func:`render` checks that), or
    an error for a value the driver would write wrongly (:func:`refuse_miswritten`)."""
    kind = type(value)
    if kind is str:
        return "'" + escape_string(value) + "'"
    if kind is int:
        return str(value)
    if value is None:
        return "NULL"
    if kind is datetime and value.tzinfo is None:
        return "'" + str(value.isoformat(" ")) + "'"
    if kind is Decimal and value.is_finite():
        return format(value, "f")
    refuse_miswritten(value)
    return str(driver.escape(value))  # any other type: the driver's own conversion


def refuse_miswritten(value: Any) -> None:
    """Raise for a value the driver (aiomysql 0.3 on PyMySQL 1.1) would write as something else.

    A Decimal that is not a number goes out unquoted (``NaN``, which the server reads as a
    column name): refused with the error PyMySQL 1.2 raises for it. A bytearray or memoryview
    goes out as its repr in a string: refused; bytes are written as binary.
    """
    if isinstance(value, Decimal) and not value.is_finite():
        raise DriverProgrammingError(f"{str(value).lower()} can not be used with MySQL")
    if isinstance(value, bytearray | memoryview):
        raise TypeError(f"{type(value).__name__} can not be used as a parameter: pass bytes")


def render(cursor: Any, sql: str, params: Sequence[Any]) -> str:
    """``sql`` with its ``%s`` placeholders replaced by ``params`` as literals: the text
    ``cursor.mogrify(sql, params)`` returns (``cursor``: an aiomysql cursor), or an error for a
    value the driver would write wrongly. A server in ``NO_BACKSLASH_ESCAPES`` mode quotes
    strings differently: there the driver renders, and bytes are refused (aiomysql escapes them
    with backslashes in every mode, so the server would end the literal early)."""
    driver = cursor.connection
    if driver.server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES:
        for value in params:
            refuse_miswritten(value)
            if isinstance(value, bytes):
                raise DriverNotSupportedError("bytes parameters under NO_BACKSLASH_ESCAPES")
        return str(cursor.mogrify(sql, tuple(params)))
    return sql % tuple([literal(value, driver) for value in params])


def _render(cursor: Any, statement: Statement) -> str:
    """The statement as the driver would send it (:func:`render`)."""
    if not statement.rows:
        return render(cursor, statement.sql, statement.params)
    head, values, row = statement.sql.rpartition(" VALUES ")
    assert values, "a multi-row statement is an INSERT ... VALUES (...)"
    return head + values + ",".join(render(cursor, row, params) for params in statement.params)


async def _run(
    conn: AsyncConnection, sql: str, params: Any, *, many: bool, fetch: bool
) -> tuple[int, list[tuple[Any, ...]]]:
    async def send(cursor: Any) -> tuple[int, list[tuple[Any, ...]]]:
        if many:
            await cursor.executemany(sql, params)
        else:
            await cursor.execute(sql, params)
        rows = list(await cursor.fetchall()) if fetch else []
        return int(cursor.rowcount), rows

    return await _on_cursor(conn, sql, send)


async def _on_cursor(conn: AsyncConnection, sql: str, send: Callable[[Any], Awaitable[R]]) -> R:
    """``send`` on a cursor of ``conn``'s driver connection; a driver error raised as the
    SQLAlchemy exception SQLAlchemy would have raised (``sql`` names the statement in it), and
    the connection invalidated when ``send`` is interrupted, as SQLAlchemy does."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None, "a checked-out connection has its driver connection"
    try:
        with tracing.database_call(sql):
            async with driver.cursor() as cursor:
                return await send(cursor)
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
    except BaseException:
        # Cancelled halfway through the protocol: the driver has closed its connection. The
        # pool must discard it, not roll it back (that raises, and the error would replace the
        # cancellation in whoever holds the connection).
        with contextlib.suppress(Exception):  # nor may a failure to invalidate replace it
            await conn.invalidate()
        raise
