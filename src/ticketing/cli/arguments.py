"""Argument types the commands share: times given as an ISO 8601 moment or as an age."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

from ticketing.shared.clock import naive_utc, utcnow

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when no zone is given) or an age such as ``90m``, ``2h``, ``7d``.

    Returned as naive UTC, the way the stores keep times.
    """
    now = now or utcnow()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use ISO 8601 such as 2026-11-27T10:00:00Z, or an age "
            "such as 2h)"
        ) from None
    if moment.tzinfo is not None:
        moment = naive_utc(moment)
    return moment


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``2h``, ``7d``, ``1w``."""
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in _UNITS or not text[:-1].isdigit():
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 2h, 7d, 1w)")
    return timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])


def moment(text: str) -> object:
    """:func:`parse_moment` as an argparse type: a bad value is a usage error."""
    try:
        return parse_moment(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
