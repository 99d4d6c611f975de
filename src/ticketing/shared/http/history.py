"""History for users, the same in every event-sourced service: a stream's events a page at a
time, and the ``as_of`` parameter of time travel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.contracts.history import AwareDatetime, HistoryEntry
from ticketing.shared.errors import InvalidInput
from ticketing.shared.http.pagination import decode_version_cursor, encode_version_cursor
from ticketing.shared.store.eventstore import EventStore, Recorded

# Litestar parses a datetime query parameter leniently (no offset, epoch seconds), so the
# parameter arrives as text and is held to the body's AwareDatetime here.
AS_OF = QueryParameter(
    description="RFC 3339 time with an offset (percent-encode a '+'): the state as it was then",
    schema_extra={"format": "date-time"},
)


def parse_as_of(text: str) -> datetime:
    """``as_of`` in UTC; a time whose UTC falls outside years 1-9999 is invalid too."""
    try:
        return msgspec.convert(text, AwareDatetime).astimezone(UTC)
    except (msgspec.ValidationError, OverflowError) as error:
        message = "out of range" if isinstance(error, OverflowError) else str(error)
        raise InvalidInput(
            f"Invalid value for as_of: {message}",
            errors=[{"field": "as_of", "message": message, "source": "query"}],
        ) from None


def history_entry(recorded: Recorded) -> HistoryEntry:
    """A stored event as the history serves it: its payload as the store's codec writes it."""
    data: dict[str, Any] = msgspec.to_builtins(recorded.event)
    return HistoryEntry(
        version=recorded.version,
        type=recorded.event_type,
        recorded_at=recorded.recorded_at,
        actor=recorded.actor,
        correlation_id=recorded.correlation_id,
        causation_id=recorded.causation_id,
        data=data,
    )


async def history_page(
    conn: AsyncConnection, store: EventStore, stream_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[HistoryEntry], str | None]:
    """Up to ``limit`` events of the stream after ``cursor``, and the next page's cursor."""
    after = 0 if cursor is None else decode_version_cursor(cursor)
    recorded = await store.stream_page(conn, stream_id, after_version=after, limit=limit + 1)
    more = len(recorded) > limit
    items = [history_entry(r) for r in recorded[:limit]]
    return items, encode_version_cursor(recorded[limit - 1].version) if more else None
