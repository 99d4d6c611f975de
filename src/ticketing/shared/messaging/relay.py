"""The outbox relay: publishes a service's unpublished events from its event store (the store
is the outbox, ADR 12) to Kafka, then marks them published.

- At-least-once: a row is marked only after the broker acknowledged it (``acks=all``); a crash in
  between publishes it again and consumers deduplicate on ``message_id``.
- One active relay per service database: a MySQL named lock (``GET_LOCK``) elects it, so two
  relays never publish side by side; the others wait on standby and take over when it dies.
- Order: events are read by ``published_at IS NULL`` in position order, never by a high-water
  mark, so a transaction that commits after a higher position is never skipped; an event that is
  causally later always has a higher position and commits later, so no read sees it without its
  predecessors, and aiokafka keeps send order per partition. While a batch is in flight the next
  read leaves out exactly its positions, not their range: a late event inside the range goes
  before the higher ones. (Internal events are stored as delivered, so the read never meets
  them.)
- Latency: the writer calls :meth:`OutboxRelay.wake` after its commit; a short poll covers rows
  written by other processes.
- Broker outages are retried with capped exponential backoff; nothing is lost or dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.shared.cancellation import stop_if_cancelled
from ticketing.shared.clock import utcnow
from ticketing.shared.db import sql
from ticketing.shared.messaging.publishing import (
    UNPUBLISHED_COLUMNS,
    Unpublished,
    send_rows,
    start_producer,
    unpublished,
)
from ticketing.shared.settings import Settings

log = structlog.get_logger(__name__)
ProducerFactory = Callable[[], AIOKafkaProducer]
_GET_LOCK = text("SELECT GET_LOCK(:name, 1)")
_RELEASE_LOCK = text("SELECT RELEASE_LOCK(:name)")


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        *,
        lock_name: str,
        producer_factory: ProducerFactory,
        batch_size: int = 500,
        poll_interval: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        self._engine = engine
        self.lock_name = lock_name
        self._producer_factory = producer_factory
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        # Only what goes to Kafka is read. Our own table name only; every value is a parameter.
        name = sql.quote(table.name)
        self._select = (
            f"SELECT {UNPUBLISHED_COLUMNS} FROM {name} "  # noqa: S608
            "WHERE published_at IS NULL"
        )
        self._mark_prefix = f"UPDATE {name} SET published_at = %s WHERE position IN "  # noqa: S608
        self._wake = asyncio.Event()
        self.published = 0
        self.is_leader = False
        self.running = False

    def wake(self) -> None:
        """Tell the relay that rows were committed (called after the writer's commit)."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled: win leadership, publish, and recover from every failure.
        ``running`` says whether this task is alive (readiness reads it)."""
        self.running = True
        try:
            await self._relay_forever()
        finally:
            self.running = False

    async def _relay_forever(self) -> None:
        delay = 0.1
        while True:
            producer: AIOKafkaProducer | None = None
            try:
                async with self._leadership() as conn:
                    producer = self._producer_factory()
                    await start_producer(producer, max_delay=self._max_backoff)
                    delay = 0.1
                    await self._publish_forever(conn, producer)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the relay must survive anything
                stop_if_cancelled(error)
                log.warning("outbox relay failed, restarting", error=repr(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
            finally:
                self.is_leader = False
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await producer.stop()

    @contextlib.asynccontextmanager
    async def _leadership(self) -> AsyncIterator[AsyncConnection]:
        """Hold the relay lock on a dedicated connection (released when it closes or dies).

        The connection runs in autocommit: the relay's read needs no transaction, and its mark
        is one statement, so each batch costs a round trip less than with explicit commits.
        """
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            while True:
                got = await conn.scalar(_GET_LOCK, {"name": self.lock_name})
                if got == 1:
                    break
            self.is_leader = True
            log.info("outbox relay is the leader", lock=self.lock_name)
            try:
                yield conn
            finally:
                with contextlib.suppress(Exception):
                    await conn.execute(_RELEASE_LOCK, {"name": self.lock_name})

    async def _publish_forever(self, conn: AsyncConnection, producer: AIOKafkaProducer) -> None:
        delay = 0.1
        while True:
            self._wake.clear()
            try:
                count = await self.publish(conn, producer)
            except KafkaError as error:
                log.warning("publishing failed, retrying", error=repr(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            delay = 0.1
            if count < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    async def publish(self, conn: AsyncConnection, producer: AIOKafkaProducer) -> int:
        """Publish the oldest unpublished events, batch after batch while batches come full;
        the number published.

        A batch is sent only after the one before was acknowledged, so the order is that of the
        positions. While a full batch waits for the broker, the one before is marked and the next
        one read, leaving out exactly the positions in flight (not marked yet): an event that
        committed late inside their range must be read now, before the higher positions read
        with it, or it would go out after a later event of its key.
        """
        published = 0
        unmarked: list[Unpublished] = []  # acknowledged by the broker, not marked yet
        batch = await self._read(conn)
        while batch:
            sending = asyncio.ensure_future(send_rows(producer, batch))
            following: list[Unpublished] = []
            try:
                await self._mark(conn, unmarked)
                unmarked = []
                if len(batch) == self._batch_size:
                    following = await self._read(conn, in_flight=batch)
            finally:
                await sending  # a broker error propagates: this batch stays unmarked
            unmarked = batch
            published += len(batch)
            batch = following
        await self._mark(conn, unmarked)
        return published

    async def _mark(self, conn: AsyncConnection, rows: list[Unpublished]) -> None:
        if rows:
            await sql.execute(
                conn,
                f"{self._mark_prefix}({sql.placeholders(len(rows))})",
                [utcnow(), *(row.position for row in rows)],
            )
            self.published += len(rows)

    async def _read(
        self, conn: AsyncConnection, *, in_flight: Sequence[Unpublished] = ()
    ) -> list[Unpublished]:
        """The oldest unpublished events, but for those ``in_flight`` (sent, not marked yet)."""
        query = self._select
        params = [row.position for row in in_flight]
        if params:
            query += f" AND position NOT IN ({sql.placeholders(len(params))})"
        rows = await sql.fetch_all(
            conn, query + " ORDER BY position LIMIT %s", [*params, self._batch_size]
        )
        return [unpublished(row) for row in rows]


def relay_lock_name(settings: Settings, service: str) -> str:
    return f"{settings.db_prefix}{service}.outbox-relay"
