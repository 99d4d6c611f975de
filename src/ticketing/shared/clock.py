"""The one clock of the services' databases."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now in naive UTC: how DATETIME columns hold times (the sessions' zone is UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(moment: datetime) -> datetime:
    """An aware time as DATETIME columns hold it: in UTC, without its zone."""
    return moment.astimezone(UTC).replace(tzinfo=None)
