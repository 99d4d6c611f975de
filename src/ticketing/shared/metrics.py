"""Prometheus collectors read asynchronously just before a scrape, where only an await can read
them (a database, a Kafka consumer).

Everything here is read when ``/metrics`` is scraped, never on a request's or a message's path.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import structlog
from prometheus_client import Metric
from prometheus_client.registry import Collector

from ticketing.shared.cancellation import stop_if_cancelled

log = structlog.get_logger(__name__)


class ReadAtScrape(Collector, ABC):
    """A collector whose samples are read with an await (:meth:`read`) just before each
    scrape. A read that fails or takes longer than ``timeout`` leaves its families out of that
    scrape: no sample at all says "unknown", where the last value would say something false."""

    timeout = 2.0

    def __init__(self) -> None:
        self._snapshot: Sequence[Metric] = ()
        self._failing = False

    @abstractmethod
    async def read(self) -> Sequence[Metric]:
        """The families as they are now."""

    @abstractmethod
    def describe(self) -> Sequence[Metric]:
        """The families this collector yields, without samples (the registry checks names)."""

    async def refresh(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                families = await self.read()
        except Exception as error:  # noqa: BLE001 - a scrape must answer whatever failed
            stop_if_cancelled(error)
            self._snapshot = ()
            if not self._failing:  # once per failure, not once per scrape
                self._failing = True
                log.warning("metrics read failed", collector=type(self).__name__, error=repr(error))
            return
        if self._failing:
            self._failing = False
            log.info("metrics read again", collector=type(self).__name__)
        self._snapshot = families

    def collect(self) -> Iterator[Metric]:
        yield from self._snapshot
