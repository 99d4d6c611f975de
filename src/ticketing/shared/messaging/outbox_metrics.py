"""The outbox's backlog as Prometheus sees it, read from the event store at scrape time.

One statement on ``ix_event_store_published_at_position``: the pending events are that index's
``published_at IS NULL`` range, counted without reading a row, and the oldest of them is the
range's first entry (the lowest position), whose row alone is read for its time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.shared.clock import utcnow
from ticketing.shared.db import sql
from ticketing.shared.metrics import ReadAtScrape
from ticketing.shared.store.table import STORE_TABLE

_TABLE = sql.quote(STORE_TABLE)
BACKLOG_QUERY = (
    f"SELECT COUNT(*), (SELECT recorded_at FROM {_TABLE} "  # noqa: S608 - our names only
    "WHERE published_at IS NULL ORDER BY position LIMIT 1) "
    f"FROM {_TABLE} WHERE published_at IS NULL"
)


async def backlog(engine: AsyncEngine) -> tuple[int, datetime | None]:
    """How many events wait for the relay, and when the oldest of them was recorded (naive
    UTC, None when none waits)."""
    async with engine.connect() as conn:
        ((pending, oldest),) = await sql.fetch_all(conn, BACKLOG_QUERY)
    return int(pending or 0), oldest


def age_seconds(oldest: datetime | None, now: datetime) -> float:
    """The age of the oldest pending event; 0 when none waits (nothing is late)."""
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


class OutboxCollector(ReadAtScrape):
    """``outbox_pending_events{service}`` and ``outbox_oldest_pending_age_seconds{service}``."""

    def __init__(self, engine: AsyncEngine, service: str) -> None:
        super().__init__()
        self._engine = engine
        self._service = service

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "outbox_pending_events",
                "Events in the event store the relay has not published yet",
                labels=["service"],
            ),
            GaugeMetricFamily(
                "outbox_oldest_pending_age_seconds",
                "Age of the oldest event the relay has not published yet (0 when none waits)",
                labels=["service"],
            ),
        )

    def describe(self) -> Sequence[Metric]:
        return self._families()

    async def read(self) -> Sequence[Metric]:
        pending, oldest = await backlog(self._engine)
        count, age = self._families()
        count.add_metric([self._service], pending)
        age.add_metric([self._service], age_seconds(oldest, utcnow()))
        return count, age
