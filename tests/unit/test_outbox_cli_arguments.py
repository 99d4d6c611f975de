"""The outbox command's times: a duration such as ``7d``, and a moment given as an age or an
ISO time (read as UTC)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ticketing.cli.arguments import parse_duration, parse_moment

NOW = datetime(2026, 11, 27, 12, 0, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-1d", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_moments_are_ages_or_iso_times_in_utc() -> None:
    assert parse_moment("2h", now=NOW) == NOW - timedelta(hours=2)
    assert parse_moment("2026-11-27T10:00:00Z", now=NOW) == datetime(2026, 11, 27, 10)
    assert parse_moment("2026-11-27T11:00:00+01:00", now=NOW) == datetime(2026, 11, 27, 10)
    assert parse_moment("2026-11-27T10:00:00", now=NOW) == datetime(2026, 11, 27, 10)
    with pytest.raises(ValueError, match="not a time"):
        parse_moment("yesterday", now=NOW)
