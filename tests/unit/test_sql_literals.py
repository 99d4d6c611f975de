"""Our rendering of SQL literals writes exactly what the driver's escaping writes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pymysql.converters
from hypothesis import given
from hypothesis import strategies as st

from ticketing.shared import sql

SPECIAL = "\\\0\n\r\x1a\"'%"


class DriverEscape:
    """What ``literal`` asks of the driver for the types it does not render itself."""

    def __init__(self) -> None:
        self.asked: list[Any] = []

    def escape(self, value: Any) -> str:
        self.asked.append(value)
        return str(pymysql.converters.escape_item(value, "utf8mb4"))


def driver_literal(value: Any) -> str:
    return str(pymysql.converters.escape_item(value, "utf8mb4"))


@given(st.text(alphabet=st.sampled_from(SPECIAL) | st.characters(), max_size=300))
def test_strings_are_escaped_as_the_driver_escapes_them(value: str) -> None:
    assert sql.escape_string(value) == pymysql.converters.escape_string(value)
    assert sql.literal(value, DriverEscape()) == driver_literal(value)


def test_every_special_character_and_their_mixtures() -> None:
    for text in [*SPECIAL, SPECIAL, SPECIAL[::-1], "\\'", "\\\\'", "'\\", "x\\0y", "\\n\\"]:
        assert sql.escape_string(text) == pymysql.converters.escape_string(text), repr(text)
    assert sql.literal("x'); DROP TABLE t; --", DriverEscape()) == "'x\\'); DROP TABLE t; --'"


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_naive_datetimes_render_as_the_driver_renders_them(value: datetime) -> None:
    assert sql.literal(value, DriverEscape()) == driver_literal(value)


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_integers(value: int) -> None:
    assert sql.literal(value, DriverEscape()) == driver_literal(value)


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimals(value: Decimal) -> None:
    assert sql.literal(value, DriverEscape()) == driver_literal(value)


def test_null_and_every_other_type_go_to_the_driver() -> None:
    driver = DriverEscape()
    assert sql.literal(None, driver) == "NULL"
    aware = datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
    others: list[Any] = [True, 1.5, b"\x00'bytes", aware, aware.date()]
    for value in others:
        assert sql.literal(value, driver) == driver_literal(value), value
    assert driver.asked == others
