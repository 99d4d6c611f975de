"""The event store: one append-only table per service database, the source of truth of that
service's aggregates (ADR 12).

Every state change is an event appended to its aggregate's stream with the next version; the
state tables are projections that ``evolve`` writes in the same transaction. ``UNIQUE
(stream_id, version)`` makes appends optimistic: a writer that decided on a stale version fails
on that key (MySQL error 1062) and decides again, like after a deadlock. Events are never
updated or deleted.

Events are plain dataclasses of each service's domain, read back in their current shape
(:mod:`ticketing.shared.store.codec`); the table is :mod:`ticketing.shared.store.table`.

The store is also the service's outbox: an event whose type has a :class:`Publication` is
stored with its topic and key and ``published_at`` empty until the relay has published it
(its event id is then its message id); any other event is internal, stored as delivered.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.contracts.events import Publication
from ticketing.shared.clock import naive_utc
from ticketing.shared.correlation import printable_ascii
from ticketing.shared.db import sql
from ticketing.shared.ids import new_id
from ticketing.shared.store.codec import EventCodec, UnknownEventType
from ticketing.shared.store.table import INSERT_COLUMNS, MAX_ID_LENGTH, TRACEPARENT_LENGTH


@dataclass(frozen=True, slots=True)
class Cause:
    """Who and what caused the events of one transaction: the metadata stored with each."""

    actor: str  # the token's client for API calls, the consumer's name for messages
    correlation_id: str | None = None
    causation_id: str | None = None  # the request or message that caused them
    traceparent: str | None = None  # the trace they are part of, when tracing is on

    def caused_by(
        self,
        causation_id: str | None,
        correlation_id: str | None,
        traceparent: str | None = None,
    ) -> Cause:
        """This cause, with the causation and correlation ids and the trace of one item of a
        batch (each item of a batch may come from another message) where they are given and
        fit the store's columns."""
        return Cause(
            actor=self.actor,
            correlation_id=fitting(correlation_id) or self.correlation_id,
            causation_id=fitting(causation_id) or self.causation_id,
            traceparent=fitting_trace(traceparent) or self.traceparent,
        )


def fitting(identifier: str | None) -> str | None:
    """``identifier`` when the store can hold it whole and it is printable ASCII (as ids from
    headers must be), else None: never a clipped or garbled id."""
    if identifier and len(identifier) <= MAX_ID_LENGTH and printable_ascii(identifier):
        return identifier
    return None


def fitting_trace(traceparent: str | None) -> str | None:
    """``traceparent`` when the store can hold it whole and it is printable ASCII, else None."""
    if traceparent and len(traceparent) <= TRACEPARENT_LENGTH and printable_ascii(traceparent):
        return traceparent
    return None


@dataclass(frozen=True, slots=True)
class Pending:
    """An event to append as ``version`` of the stream ``stream_id``; ``cause``, when given,
    replaces the transaction's for this event."""

    stream_id: uuid.UUID
    stream_type: str
    version: int
    event: Any  # a domain event: a dataclass with SCHEMA_VERSION
    cause: Cause | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event as stored, decoded (and upcast) to its current dataclass."""

    position: int
    event_id: uuid.UUID
    stream_id: uuid.UUID
    stream_type: str
    version: int
    event_type: str
    event: Any  # a domain event: a dataclass with SCHEMA_VERSION
    actor: str
    correlation_id: str | None
    causation_id: str | None
    recorded_at: datetime  # aware, UTC


def unbroken(recorded: Sequence[Recorded]) -> list[Recorded]:
    """The events of one stream up to the first missing version. Instances' clocks may
    disagree, so a later version can carry an earlier ``recorded_at`` than the one before it;
    a state as of a time is only the stream's prefix recorded by then, never a fold over a gap.
    """
    prefix: list[Recorded] = []
    for expected, event in enumerate(recorded, start=1):
        if event.version != expected:
            break
        prefix.append(event)
    return prefix


class EventStore:
    """Appends to and reads one service's store through ``codec``; events of the types in
    ``publications`` are stored for the relay to publish."""

    def __init__(
        self,
        table: Table,
        codec: EventCodec,
        publications: Mapping[str, Publication] | None = None,
    ) -> None:
        self.table = table
        self.codec = codec
        self.publications = dict(publications or {})
        self._encoder = msgspec.json.Encoder()
        self._insert = sql.insert_sql(table, INSERT_COLUMNS)
        columns = (
            "position, event_id, stream_id, stream_type, version, event_type, schema_version, "
            "payload, actor, correlation_id, causation_id, recorded_at"
        )
        self._select = f"SELECT {columns} FROM {sql.quote(table.name)}"  # noqa: S608 - ours

    def append(self, pending: Sequence[Pending], cause: Cause, now: datetime) -> sql.Statement:
        """The statement appending ``pending`` (not empty), for the transaction that writes
        their projections (``now``: naive UTC). A stale version fails it on the unique key.

        A published event keeps its ``message_id`` as its event id (consumers deduplicate on
        it) and waits for the relay; an internal one gets a new id and is stored as delivered.
        """
        rows = []
        for item in pending:
            why = item.cause or cause
            event_type = type(item.event).__name__
            publication = self.publications.get(event_type)
            if publication is None:
                event_id, topic, key, published_at = new_id(), None, None, now
            else:
                event_id, topic = item.event.message_id, publication.topic
                key, published_at = publication.key(item.event), None
            rows.append(
                (
                    str(event_id),
                    str(item.stream_id),
                    item.stream_type,
                    item.version,
                    event_type,
                    type(item.event).SCHEMA_VERSION,
                    self.codec.encode(item.event),
                    why.correlation_id,
                    why.causation_id,
                    fitting_trace(why.traceparent),
                    why.actor,
                    now,
                    topic,
                    key,
                    published_at,
                )
            )
        return sql.Statement(self._insert, rows, rows=True)

    async def stream(
        self, conn: AsyncConnection, stream_id: uuid.UUID, *, until: datetime | None = None
    ) -> list[Recorded]:
        """The events of one stream in version order; with ``until`` (aware), only those
        recorded at or before it."""
        query = self._select + " WHERE stream_id = %s"
        params: list[Any] = [str(stream_id)]
        if until is not None:
            query += " AND recorded_at <= %s"
            params.append(naive_utc(until))
        rows = await sql.fetch_all(conn, query + " ORDER BY version", params)
        return [self._recorded(row) for row in rows]

    async def stream_page(
        self, conn: AsyncConnection, stream_id: uuid.UUID, *, after_version: int, limit: int
    ) -> list[Recorded]:
        """Up to ``limit`` events of one stream after ``after_version``, in version order: a
        range of the ``(stream_id, version)`` key (a position range filtered by stream would
        scan every later event of every stream)."""
        rows = await sql.fetch_all(
            conn,
            self._select + " WHERE stream_id = %s AND version > %s ORDER BY version LIMIT %s",
            [str(stream_id), after_version, limit],
        )
        return [self._recorded(row) for row in rows]

    async def page(
        self,
        conn: AsyncConnection,
        *,
        after: int = 0,
        limit: int = 1000,
        stream_id: uuid.UUID | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        lenient: bool = False,
    ) -> list[Recorded]:
        """Up to ``limit`` events after position ``after``, in position order; only those of
        ``stream_id``, of ``event_type``, recorded at or after ``since`` and before ``until``
        (naive UTC) when given. With ``lenient``, an event this code cannot decode (a newer
        release's) comes with ``event`` None instead of failing the page."""
        query = self._select + " WHERE position > %s"
        params: list[Any] = [after]
        for condition, value in (
            (" AND stream_id = %s", None if stream_id is None else str(stream_id)),
            (" AND event_type = %s", event_type),
            (" AND recorded_at >= %s", since),
            (" AND recorded_at < %s", until),
        ):
            if value is not None:
                query += condition
                params.append(value)
        rows = await sql.fetch_all(conn, query + " ORDER BY position LIMIT %s", [*params, limit])
        return [self._recorded(row, lenient=lenient) for row in rows]

    async def streams_page(
        self,
        conn: AsyncConnection,
        streams: str,
        params: Sequence[Any],
        *,
        after: int,
        upto: int,
        limit: int,
        lenient: bool = False,
    ) -> list[Recorded]:
        """Up to ``limit`` events with ``after`` < position <= ``upto``, in position order, of
        the streams whose ids the query ``streams`` (with ``params``) selects: each stream is
        found through its key, not by scanning every event in the range. ``lenient`` as for
        :meth:`page`."""
        query = (
            self._select
            + f" WHERE stream_id IN ({streams}) AND position > %s AND position <= %s"
            + " ORDER BY position LIMIT %s"
        )
        rows = await sql.fetch_all(conn, query, [*params, after, upto, limit])
        return [self._recorded(row, lenient=lenient) for row in rows]

    def as_json(self, recorded: Recorded) -> bytes:
        """One event as a JSON object: its metadata, and as ``data`` the payload in the current
        shape (upcast when it was stored in an older one)."""
        return self._encoder.encode(
            {
                "position": recorded.position,
                "event_id": recorded.event_id,
                "stream_id": recorded.stream_id,
                "stream_type": recorded.stream_type,
                "version": recorded.version,
                "event_type": recorded.event_type,
                "schema_version": type(recorded.event).SCHEMA_VERSION,
                "recorded_at": recorded.recorded_at,
                "actor": recorded.actor,
                "correlation_id": recorded.correlation_id,
                "causation_id": recorded.causation_id,
                "data": recorded.event,
            }
        )

    def _recorded(self, row: Sequence[Any], *, lenient: bool = False) -> Recorded:
        (position, event_id, stream_id, stream_type, version, event_type, schema_version) = row[:7]
        payload, actor, correlation_id, causation_id, recorded_at = row[7:]
        try:
            event = self.codec.decode(str(event_type), int(schema_version), payload)
        except (UnknownEventType, msgspec.DecodeError):
            if not lenient:
                raise
            event = None
        return Recorded(
            position=int(position),
            event_id=uuid.UUID(str(event_id)),
            stream_id=uuid.UUID(str(stream_id)),
            stream_type=str(stream_type),
            version=int(version),
            event_type=str(event_type),
            event=event,
            actor=str(actor),
            correlation_id=correlation_id,
            causation_id=causation_id,
            recorded_at=recorded_at.replace(tzinfo=UTC),
        )
