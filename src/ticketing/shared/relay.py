"""The outbox relay: publishes unpublished outbox rows to Kafka, then marks them published.

- At-least-once: a row is marked only after the broker acknowledged it (``acks=all``); a crash in
  between publishes it again and consumers deduplicate on ``message_id``.
- One active relay per service database: a MySQL named lock (``GET_LOCK``) elects it, so two
  relays never publish side by side; the others wait on standby and take over when it dies.
- Order: rows are read by ``published_at IS NULL`` in id order, never by a high-water mark, so a
  transaction that commits after a higher id is never skipped; a row that is causally later
  always has a higher id, and aiokafka keeps send order per partition.
- Latency: the writer calls :meth:`OutboxRelay.wake` after its commit; a short poll covers rows
  written by other processes. Acknowledged batches are marked by a :class:`Marker`, a task of
  its own on a pooled connection, so the next batch is read and sent without waiting for a
  mark (its commit was a third of a relay cycle at low rates), and the batches acknowledged
  meanwhile share one transaction. The reads leave out the id ranges of the batches whose mark
  has not committed yet (a row that committed late inside such a range is read once the mark
  is done). A relay that is stopped marks what is left before it goes (one attempt, at most a
  second); one that fails or is killed with rows acknowledged but not yet marked publishes them
  again when it, or another relay, takes over: at-least-once, as a crash between the
  acknowledgment and the mark always did.
- Broker outages are retried with capped exponential backoff; nothing is lost or dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Protocol

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.shared import sql
from ticketing.shared.cancellation import stop_if_cancelled
from ticketing.shared.db import run_transaction
from ticketing.shared.outbox import decode_headers, utcnow
from ticketing.shared.partitioner import Murmur2Partitioner
from ticketing.shared.settings import Settings

log = structlog.get_logger(__name__)
ProducerFactory = Callable[[], AIOKafkaProducer]
FLUSH_TIMEOUT = 1.0  # for the last marks of a relay that stops
_GET_LOCK = text("SELECT GET_LOCK(:name, 1)")
_RELEASE_LOCK = text("SELECT RELEASE_LOCK(:name)")


def create_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=0,
        request_timeout_ms=10_000,
        max_batch_size=256 * 1024,
        partitioner=Murmur2Partitioner(),
    )


async def start_producer(producer: AIOKafkaProducer, *, max_delay: float = 5.0) -> None:
    """Start ``producer``, retrying with backoff until the broker answers."""
    delay = 0.1
    while True:
        try:
            await producer.start()
        except KafkaError as error:
            log.warning("kafka unavailable, retrying", error=repr(error), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
        else:
            return


class Sendable(Protocol):
    """What sending needs of an outbox row (an :class:`OutboxRow` or the relay's slimmer read)."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def headers(self) -> list[tuple[str, bytes]]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Unpublished:
    """An outbox row as the relay reads it: only the columns that go to Kafka."""

    id: int
    topic: str
    key: bytes
    payload: bytes
    headers: list[tuple[str, bytes]]


def _unpublished(row_id: int, topic: str, key: str, payload: str, headers: str) -> Unpublished:
    return Unpublished(row_id, topic, key.encode(), payload.encode(), decode_headers(headers))


async def send_rows(producer: AIOKafkaProducer, rows: Sequence[Sendable]) -> None:
    """Send ``rows`` in order and wait until the broker acknowledged every one.

    One ``send`` per row, not aiokafka's batch API: batches built that way were refused by
    Tansu with UnknownError after a broker restart, which stalled the relay (the broker-restart
    chaos scenario); a per-row send was never refused.
    """
    pending = [
        await producer.send(row.topic, value=row.payload, key=row.key, headers=row.headers)
        for row in rows
    ]
    await asyncio.gather(*pending)


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
        mark_linger: float = 0.02,
    ) -> None:
        self._engine = engine
        self._lock_name = lock_name
        self._producer_factory = producer_factory
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._mark_linger = mark_linger
        # Only what goes to Kafka is read: decoding the other columns was a third of the
        # relay's time. Our own table name only; every value is a parameter.
        name = sql.quote(table.name)
        self._select = (
            f"SELECT id, topic, message_key, payload, headers FROM {name} "  # noqa: S608
            "WHERE published_at IS NULL"
        )
        self._mark_prefix = f"UPDATE {name} SET published_at = %s WHERE id IN "  # noqa: S608
        self._wake = asyncio.Event()
        self.published = 0
        self.is_leader = False

    def wake(self) -> None:
        """Tell the relay that rows were committed (called after the writer's commit)."""
        self._wake.set()

    async def run(self) -> None:
        """Relay until cancelled: win leadership, publish, and recover from every failure."""
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

        The connection runs in autocommit: the relay's read needs no transaction.
        """
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            while True:
                got = await conn.scalar(_GET_LOCK, {"name": self._lock_name})
                if got == 1:
                    break
            self.is_leader = True
            log.info("outbox relay is the leader", lock=self._lock_name)
            try:
                yield conn
            finally:
                with contextlib.suppress(Exception):
                    await conn.execute(_RELEASE_LOCK, {"name": self._lock_name})

    async def _publish_forever(self, conn: AsyncConnection, producer: AIOKafkaProducer) -> None:
        marker = Marker(
            self._engine,
            self._mark_prefix,
            max_backoff=self._max_backoff,
            linger=self._mark_linger,
            counted=self._count,
        )
        marking = asyncio.create_task(marker.run())
        try:
            delay = 0.1
            while True:
                self._wake.clear()
                try:
                    count = await self.publish(conn, producer, marker)
                except KafkaError as error:
                    log.warning("publishing failed, retrying", error=repr(error), retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff)
                    continue
                delay = 0.1
                if count < self._batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll_interval)
        finally:
            marking.cancel()
            await asyncio.gather(marking, return_exceptions=True)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # Stopping, not failing (the database is likely fine): mark what the broker
                # acknowledged, so that the next relay does not publish it again.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(marker.flush(), FLUSH_TIMEOUT)

    def _count(self, marked: int) -> None:
        self.published += marked

    async def publish(
        self, conn: AsyncConnection, producer: AIOKafkaProducer, marker: Marker
    ) -> int:
        """Publish the oldest unpublished rows, batch after batch while batches come full, and
        hand each acknowledged batch to ``marker``; the number published.

        A batch is sent only after the one before was acknowledged, so the order is that of the
        ids. While a full batch waits for the broker, the next one is read: the read skips the
        id range of the batch in flight (a row inside that range that committed late is read a
        batch later) and the rows ``marker`` has yet to mark.
        """
        published = 0
        batch = await self._read(conn, marker.unmarked())
        while batch:
            sending = asyncio.ensure_future(send_rows(producer, batch))
            following: list[Unpublished] = []
            try:
                if len(batch) == self._batch_size:
                    in_flight = (batch[0].id, batch[-1].id)
                    following = await self._read(conn, [*marker.unmarked(), in_flight])
            finally:
                await sending  # a broker error propagates: this batch is never marked
            marker.add(batch[0].id, batch[-1].id, [row.id for row in batch])
            published += len(batch)
            batch = following
        return published

    async def _read(
        self, conn: AsyncConnection, skip: Sequence[tuple[int, int]]
    ) -> list[Unpublished]:
        """The oldest unpublished rows outside the id ranges ``skip`` (published already, their
        mark under way or their batch in flight). The ranges must be taken before the read is
        sent: a mark that commits while the read runs may or may not be seen by it."""
        query = self._select + " AND (id < %s OR id > %s)" * len(skip)
        params = [bound for pair in skip for bound in pair]
        rows = await sql.fetch_all(
            conn, query + " ORDER BY id LIMIT %s", [*params, self._batch_size]
        )
        return [_unpublished(*row) for row in rows]


class Marker:
    """Marks acknowledged batches published, in a task of its own on a pooled connection.

    Each mark is one transaction for every batch acknowledged since the one before (one round
    trip), each row stamped with the time its batch was acknowledged; after a mark it waits
    ``linger`` seconds, so that at low rates several batches share a mark (the rows wait longer
    to be marked, nothing waits for them). A failed mark is retried with backoff. Until its mark
    has committed, a batch's id range is in :meth:`unmarked`, which the relay's reads leave out.
    """

    MAX_RANGES = 16  # beyond that, one range covers them all

    def __init__(
        self,
        engine: AsyncEngine,
        mark_prefix: str,
        *,
        max_backoff: float,
        linger: float = 0.02,
        counted: Callable[[int], None] = lambda _: None,
    ) -> None:
        self._engine = engine
        self._mark_prefix = mark_prefix
        self._max_backoff = max_backoff
        self._linger = linger
        self._counted = counted
        self._waiting: list[_Acknowledged] = []  # not yet in a mark
        self._marking: list[_Acknowledged] = []  # in the mark under way
        self._wake = asyncio.Event()

    def add(self, first: int, last: int, ids: list[int]) -> None:
        """Mark ``ids`` (from ``first`` to ``last``), acknowledged by the broker just now."""
        self._waiting.append(_Acknowledged(utcnow(), first, last, ids))
        self._wake.set()

    def unmarked(self) -> list[tuple[int, int]]:
        """The id ranges of the batches whose mark has not committed yet."""
        ranges = [(batch.first, batch.last) for batch in (*self._marking, *self._waiting)]
        if len(ranges) > self.MAX_RANGES:
            return [(min(r[0] for r in ranges), max(r[1] for r in ranges))]
        return ranges

    async def run(self) -> None:
        delay = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._marking, self._waiting = self._waiting, []
            try:
                await run_transaction(
                    self._engine, functools.partial(self._mark, self._marking), commits_itself=True
                )
            except Exception as error:  # noqa: BLE001 - retried until it succeeds
                stop_if_cancelled(error)
                log.warning("marking published rows failed", error=repr(error), retry_in=delay)
                self._waiting[:0] = self._marking
                self._marking = []
                self._wake.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            delay = 0.1
            marked, self._marking = self._marking, []
            self._counted(sum(len(batch.ids) for batch in marked))
            await asyncio.sleep(self._linger)

    async def flush(self) -> None:
        """Mark, in one attempt, every batch still unmarked (call once :meth:`run` stopped)."""
        left, self._marking, self._waiting = [*self._marking, *self._waiting], [], []
        if left:
            await run_transaction(
                self._engine, functools.partial(self._mark, left), commits_itself=True
            )
            self._counted(sum(len(batch.ids) for batch in left))

    async def _mark(self, batches: list[_Acknowledged], conn: AsyncConnection) -> list[int]:
        statements = [
            sql.Statement(
                f"{self._mark_prefix}({sql.placeholders(len(batch.ids))})", [batch.at, *batch.ids]
            )
            for batch in batches
        ]
        return await sql.commit_all(conn, statements)


@dataclasses.dataclass(frozen=True, slots=True)
class _Acknowledged:
    at: datetime
    first: int
    last: int
    ids: list[int]


def relay_lock_name(settings: Settings, service: str) -> str:
    return f"{settings.db_prefix}{service}.outbox-relay"
