"""What every service's projection check and rebuild share: the snapshot a check reads in, the
store read stream by stream, the report of a rebuild, and the words for a row the tables and
the events disagree on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.shared.store.eventstore import EventStore, Recorded

State = TypeVar("State")


@asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in one REPEATABLE READ transaction, whose snapshot the first read fixes, so
    that writes going on meanwhile are seen by all of its reads or by none."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            yield conn


async def verify_projection(
    engine: AsyncEngine,
    folded: Callable[[AsyncConnection, list[str]], Awaitable[State]],
    stored: Callable[[AsyncConnection], Awaitable[State]],
    differences: Callable[[State, State], Iterable[str]],
) -> list[str]:
    """The problems of folding the events and every difference between their fold and what the
    tables hold (empty: they agree), both read in one :func:`snapshot` so that they compare."""
    problems: list[str] = []
    async with snapshot(engine) as conn:
        expected = await folded(conn, problems)
        actual = await stored(conn)
    return problems + list(differences(expected, actual))


async def all_streams(
    store: EventStore, conn: AsyncConnection, *, page: int
) -> dict[uuid.UUID, list[Recorded]]:
    """Every stream's events in version order, by stream id in the order streams began; the
    store is read ``page`` events at a time so that no query holds it whole."""
    streams: dict[uuid.UUID, list[Recorded]] = {}
    after = 0
    while recorded := await store.page(conn, after=after, limit=page):
        for one in recorded:
            streams.setdefault(one.stream_id, []).append(one)
        after = recorded[-1].position
    for history in streams.values():
        history.sort(key=lambda one: one.version)
    return streams


@dataclass
class Rebuilt:
    """How many rows of each of ``tables`` a rebuild wrote (inserted or corrected) and deleted,
    and the streams it could not fold (left as they are)."""

    tables: tuple[str, ...]
    written: dict[str, int] = field(init=False)
    deleted: dict[str, int] = field(init=False)
    broken: list[str] = field(default_factory=list)
    _broken_streams: set[uuid.UUID] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.written = dict.fromkeys(self.tables, 0)
        self.deleted = dict.fromkeys(self.tables, 0)

    def give_up(self, stream_id: uuid.UUID, problem: str) -> None:
        """Leave the rows of a stream that cannot be folded as they are, saying why (once)."""
        if stream_id not in self._broken_streams:
            self._broken_streams.add(stream_id)
            self.broken.append(problem)

    def gave_up(self, stream_id: uuid.UUID) -> bool:
        return stream_id in self._broken_streams

    def lines(self) -> list[str]:
        counts = [
            f"{table}: {self.written[table]} written, {self.deleted[table]} deleted"
            for table in self.tables
        ]
        return counts + [f"not rebuilt: {problem}" for problem in self.broken]


def differences(
    table: str, want: Mapping[uuid.UUID, Any], have: Mapping[uuid.UUID, Any]
) -> Iterator[str]:
    """Every row of ``table`` that the events (``want``) and the table (``have``) disagree on,
    in words."""
    for key in sorted(want.keys() | have.keys()):
        if key not in have:
            yield f"{table} {key}: missing; the events say {want[key]}"
        elif key not in want:
            yield f"{table} {key}: {have[key]} has no events"
        elif want[key] != have[key]:
            yield f"{table} {key}: the table holds {have[key]}, the events say {want[key]}"
