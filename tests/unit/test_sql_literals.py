"""Our rendering of SQL literals writes exactly what the driver writes, or refuses a value the
driver would write wrongly.

The driver here is aiomysql's own ``Connection.escape`` and ``Cursor.mogrify`` on a connection
that is not connected: escaping needs only the status bits the server sent at the handshake,
which each test sets as a server sets them.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiomysql
import pymysql.converters
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymysql.constants.SERVER_STATUS import (
    SERVER_STATUS_AUTOCOMMIT,
    SERVER_STATUS_NO_BACKSLASH_ESCAPES,
)
from pymysql.err import NotSupportedError, ProgrammingError

from ticketing.shared.db import sql

SPECIAL = "\\\0\n\r\x1a\"'%"


class Colour(enum.IntEnum):
    RED = 1


STRINGS = st.text(
    st.sampled_from(SPECIAL) | st.characters() | st.characters(categories=["Cs"]), max_size=300
)
# Python refuses to write an int of more than 4,300 digits; both sides must refuse it alike.
INTEGERS = st.integers() | st.integers(min_value=-(10**4400), max_value=10**4400)
NAIVE_DATETIMES = st.datetimes(min_value=datetime(1, 1, 1))


def built_decimal(negative: bool, digits: list[int], exponent: int) -> Decimal:
    return Decimal((int(negative), tuple(digits), exponent))


FINITE_DECIMALS = st.decimals(allow_nan=False, allow_infinity=False) | st.builds(
    built_decimal,
    st.booleans(),  # with digits of zeros only: negative zero, at any exponent
    st.lists(st.integers(0, 9), min_size=1, max_size=40),
    st.integers(-3000, 3000),
)
NON_FINITE_DECIMALS = st.sampled_from(
    [Decimal(text) for text in ("NaN", "-NaN", "NaN123", "sNaN", "-sNaN", "Infinity", "-Inf")]
) | st.decimals(allow_nan=True, allow_infinity=True).filter(lambda value: not value.is_finite())
# Every type ``literal`` accepts: the ones it writes itself and the ones it hands to the driver.
VALUES = st.one_of(
    STRINGS,
    INTEGERS,
    st.booleans(),
    st.none(),
    NAIVE_DATETIMES,
    st.datetimes(timezones=st.just(UTC)),
    FINITE_DECIMALS,
    st.floats(),
    st.binary(max_size=300),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.just(Colour.RED),
)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def connection(loop: asyncio.AbstractEventLoop, *, backslash_escapes: bool = True) -> Any:
    driver = aiomysql.Connection(charset="utf8mb4", loop=loop)
    driver.server_status = SERVER_STATUS_AUTOCOMMIT
    if not backslash_escapes:
        driver.server_status |= SERVER_STATUS_NO_BACKSLASH_ESCAPES
    return driver


@pytest.fixture(scope="module")
def driver(loop: asyncio.AbstractEventLoop) -> Any:
    return connection(loop)


@pytest.fixture(scope="module")
def cursor(driver: Any) -> Any:
    return aiomysql.Cursor(driver)


@pytest.fixture(scope="module")
def strict_cursor(loop: asyncio.AbstractEventLoop) -> Any:
    """A cursor on a server in ``NO_BACKSLASH_ESCAPES`` mode."""
    return aiomysql.Cursor(connection(loop, backslash_escapes=False))


def outcome(write: Callable[[], str]) -> tuple[str, str]:
    """What ``write`` wrote, or the type and message of what it raised."""
    try:
        return "written", write()
    except Exception as error:  # noqa: BLE001 - a refusal must be the driver's refusal
        return type(error).__name__, str(error)


@given(value=VALUES)
def test_every_value_is_written_as_the_driver_writes_it(value: Any, driver: Any) -> None:
    assert outcome(lambda: sql.literal(value, driver)) == outcome(lambda: driver.escape(value))


@given(value=STRINGS)
def test_strings_are_escaped_as_the_driver_escapes_them(value: str, driver: Any) -> None:
    assert sql.escape_string(value) == pymysql.converters.escape_string(value)
    assert sql.literal(value, driver) == driver.escape(value)


def test_every_special_character_and_their_mixtures(driver: Any) -> None:
    for text in [*SPECIAL, SPECIAL, SPECIAL[::-1], "\\'", "\\\\'", "'\\", "x\\0y", "\\n\\"]:
        assert sql.escape_string(text) == pymysql.converters.escape_string(text), repr(text)
    assert sql.literal("x'); DROP TABLE t; --", driver) == "'x\\'); DROP TABLE t; --'"


@given(value=NAIVE_DATETIMES)
def test_naive_datetimes_to_the_microsecond_from_year_one(value: datetime, driver: Any) -> None:
    assert sql.literal(value, driver) == driver.escape(value)


@given(value=INTEGERS)
def test_integers_of_any_size_and_sign(value: int, driver: Any) -> None:
    assert outcome(lambda: sql.literal(value, driver)) == outcome(lambda: driver.escape(value))


@given(value=FINITE_DECIMALS)
def test_decimals_at_any_exponent(value: Decimal, driver: Any) -> None:
    assert sql.literal(value, driver) == driver.escape(value)


def test_booleans_are_not_written_as_integers(driver: Any) -> None:
    assert (sql.literal(True, driver), sql.literal(False, driver)) == ("1", "0")
    assert sql.literal(Colour.RED, driver) == driver.escape(Colour.RED)


@given(value=NON_FINITE_DECIMALS)
def test_a_decimal_that_is_not_a_number_is_refused(
    value: Decimal, driver: Any, cursor: Any, strict_cursor: Any
) -> None:
    """PyMySQL 1.1 writes ``NaN`` unquoted, which the server reads as a column name."""
    expected = f"{str(value).lower()} can not be used with MySQL"
    with pytest.raises(ProgrammingError, match=expected):
        sql.literal(value, driver)
    for on in (cursor, strict_cursor):
        with pytest.raises(ProgrammingError, match=expected):
            sql.render(on, "SELECT %s, %s", ["a", value])


@pytest.mark.parametrize("value", [bytearray(b"x'y"), memoryview(b"x'y")])
def test_a_bytearray_or_memoryview_is_refused(
    value: Any, driver: Any, cursor: Any, strict_cursor: Any
) -> None:
    """The driver writes the repr of either as a string: the data would be lost."""
    assert driver.escape(value).startswith(("'bytearray(", "'<memory at "))
    with pytest.raises(TypeError, match="pass bytes"):
        sql.literal(value, driver)
    for on in (cursor, strict_cursor):
        with pytest.raises(TypeError, match="pass bytes"):
            sql.render(on, "SELECT %s", [value])


def test_bytes_are_refused_where_the_driver_would_break_the_quoting(strict_cursor: Any) -> None:
    """aiomysql escapes bytes with backslashes in every mode; without backslash escapes the
    server ends the literal at the escaped quote, and the rest of the value is read as SQL."""
    hostile = b"' OR 1=1 -- "
    assert strict_cursor.connection.escape("'") == "''''"  # strings are quoted for the mode
    with pytest.raises(NotSupportedError, match="NO_BACKSLASH_ESCAPES"):
        sql.render(strict_cursor, "SELECT %s", [hostile])


def statement(params: list[Any], text: list[str]) -> str:
    """SQL with a placeholder per parameter, between texts holding escaped ``%``."""
    pieces = [part.replace("%", "%%") for part in text]
    return "".join(f"{piece}%s" for piece in pieces[: len(params)]) + "".join(pieces[len(params) :])


TEXTS = st.lists(st.text(st.sampled_from(SPECIAL) | st.characters(), max_size=10), min_size=21)


@given(params=st.lists(VALUES, max_size=20), text=TEXTS)
def test_a_statement_is_rendered_as_mogrify_renders_it(
    params: list[Any], text: list[str], cursor: Any
) -> None:
    sql_text = statement(params, text)
    assert outcome(lambda: sql.render(cursor, sql_text, params)) == outcome(
        lambda: cursor.mogrify(sql_text, tuple(params))
    )


@given(params=st.lists(VALUES.filter(lambda v: not isinstance(v, bytes)), max_size=20), text=TEXTS)
def test_without_backslash_escapes_the_driver_renders(
    params: list[Any], text: list[str], strict_cursor: Any
) -> None:
    sql_text = statement(params, text)
    assert outcome(lambda: sql.render(strict_cursor, sql_text, params)) == outcome(
        lambda: strict_cursor.mogrify(sql_text, tuple(params))
    )


class Recording:
    """A driver connection that notes which values ``literal`` hands it."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.asked: list[Any] = []

    def escape(self, value: Any) -> str:
        self.asked.append(value)
        return str(self.driver.escape(value))


def test_only_the_rare_types_go_to_the_driver(driver: Any) -> None:
    recording = Recording(driver)
    common: list[Any] = ["x", 1, None, datetime(2026, 12, 2, 7, 30), Decimal("-0.50")]
    for value in common:
        assert sql.literal(value, recording) == driver.escape(value)
    assert recording.asked == []
    aware = datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
    rare: list[Any] = [True, 1.5, aware, aware.date(), Colour.RED]
    for value in rare:
        assert sql.literal(value, recording) == driver.escape(value), value
    assert recording.asked == rare
