"""Columns that every service's tables declare alike, so that their types are chosen in one
place: rows named by a UUID, and times kept to the microsecond (naive UTC, as
:func:`~ticketing.shared.clock.naive_utc` writes them)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, Uuid
from sqlalchemy.dialects.mysql import DATETIME


def uuid_key(name: str = "id") -> Column[uuid.UUID]:
    """The row's UUID primary key (or one part of it)."""
    return Column(name, Uuid, primary_key=True)


def timestamp(name: str, *, nullable: bool = False) -> Column[datetime]:
    """A time to the microsecond."""
    return Column(name, DATETIME(fsp=6), nullable=nullable)
