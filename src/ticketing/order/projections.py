"""Order's projection (``orders``) checked against its events and rebuilt from them.

``ticketing projections verify --service order`` prints every difference; ``ticketing
projections rebuild --service order`` rewrites every row the events disagree with, while the
saga keeps running. A booking's stream holds one event, so both read the store a page at a
time in position order instead of folding stream by stream.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.order.domain import ORDER_STREAM, OrderState, evolve
from ticketing.order.repository import ORDER_COLUMNS, STORE, order_row
from ticketing.order.tables import event_store, orders
from ticketing.shared.db import run_transaction
from ticketing.shared.errors import ImpossibleHistory
from ticketing.shared.eventstore import Recorded
from ticketing.shared.projections import Rebuilt

PAGE = 1000
TABLES = ("orders",)
Row = dict[str, Any]


def misfiled(recorded: Recorded) -> str | None:
    """Why ``recorded`` cannot be an event of its stream, if it cannot: an order's stream is
    of type ``order`` and named by the booking id."""
    where = f"stream {recorded.stream_id}: event at position {recorded.position}"
    if recorded.stream_type != ORDER_STREAM:
        return f"{where} is in a stream of type {recorded.stream_type!r}, not {ORDER_STREAM!r}"
    if recorded.event.booking_id != recorded.stream_id:
        return f"{where} is the outcome of booking {recorded.event.booking_id}"
    return None


def expected_row(recorded: Recorded, state: OrderState) -> Row:
    return order_row(state, recorded.recorded_at.replace(tzinfo=None))


def stored_row(row: Any) -> Row:
    return {column: getattr(row, column) for column in ORDER_COLUMNS}


def differing(have: Row, want: Row) -> list[str]:
    """The columns whose values the table and the events disagree on."""
    return [column for column in ORDER_COLUMNS if have[column] != want[column]]


# --- verify


async def folded(conn: AsyncConnection, problems: list[str]) -> dict[uuid.UUID, Row]:
    """The ``orders`` rows the events say, by booking id; every event that cannot be folded
    is added to ``problems``."""
    states: dict[uuid.UUID, OrderState] = {}
    rows: dict[uuid.UUID, Row] = {}
    after = 0
    while page := await STORE.page(conn, after=after, limit=PAGE):
        for recorded in page:
            after = recorded.position
            problem = misfiled(recorded)
            if problem is not None:
                problems.append(problem)
                continue
            try:
                state = evolve(states.get(recorded.stream_id), recorded.event)
            except ImpossibleHistory as error:
                problems.append(
                    f"stream {recorded.stream_id} cannot be folded at position "
                    f"{recorded.position}: {error}"
                )
                continue
            if state.version != recorded.version:
                problems.append(
                    f"stream {recorded.stream_id}: event at position {recorded.position} is "
                    f"version {recorded.version}, the fold is at {state.version}"
                )
            states[recorded.stream_id] = state
            rows[recorded.stream_id] = expected_row(recorded, state)
    return rows


def differences(
    expected: Mapping[uuid.UUID, Row], actual: Mapping[uuid.UUID, Row]
) -> Iterator[str]:
    """Every row the events and the table disagree on, in words."""
    for key in sorted(expected.keys() | actual.keys()):
        want, have = expected.get(key), actual.get(key)
        if have is None:
            yield f"orders {key}: missing; the events say {_shown(want or {})}"
        elif want is None:
            yield f"orders {key}: {_shown(have)} has no events"
        elif columns := differing(have, want):
            yield (
                f"orders {key}: the table holds {_shown(have, columns)}, "
                f"the events say {_shown(want, columns)}"
            )


def _shown(row: Row, columns: Sequence[str] = ORDER_COLUMNS) -> str:
    return ", ".join(f"{column}={row[column]}" for column in columns)


async def verify(engine: AsyncEngine) -> list[str]:
    """Every difference between order's events and its table (empty: they agree). Read in one
    REPEATABLE READ transaction, whose snapshot the first read fixes, so that outcomes recorded
    meanwhile are seen in both or in neither."""
    problems: list[str] = []
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            expected = await folded(conn, problems)
            actual = {row.booking_id: stored_row(row) for row in await conn.execute(select(orders))}
    return problems + list(differences(expected, actual))


# --- rebuild


async def rebuild(engine: AsyncEngine) -> Rebuilt:
    """Rewrite every ``orders`` row from the events, in place, while the saga keeps running.

    The store is read a page at a time; each page's rows are locked and written as their
    events say in one transaction. An outcome's row commits with its event and its stream
    never changes after, so no writer touches a row once its event can be read. Rows that no
    stream accounts for are deleted, and streams that cannot be folded are reported and left.
    """
    done = Rebuilt(TABLES)
    after = 0
    while True:
        async with engine.connect() as conn:
            page = await STORE.page(conn, after=after, limit=PAGE)
        if not page:
            break
        after = page[-1].position
        wanted = await _wanted(engine, page, done)
        if wanted:
            await run_transaction(engine, functools.partial(_write, wanted=wanted, done=done))
    await _delete_orphans(engine, done)
    return done


async def _wanted(
    engine: AsyncEngine, page: Sequence[Recorded], done: Rebuilt
) -> dict[uuid.UUID, Row]:
    """The rows the page's events say, by booking id, but for streams that cannot be folded:
    misfiled events, and streams of more than one event or none at version 1 (whose other
    events may be on other pages)."""
    async with engine.connect() as conn:
        counted = select(event_store.c.stream_id, func.count(), func.min(event_store.c.version))
        query = (
            counted.where(event_store.c.stream_id.in_({r.stream_id for r in page}))
            .group_by(event_store.c.stream_id)
            .having((func.count() > 1) | (func.min(event_store.c.version) != 1))
        )
        unfoldable = {row[0]: (row[1], row[2]) for row in await conn.execute(query)}
    wanted: dict[uuid.UUID, Row] = {}
    for recorded in page:
        stream_id = recorded.stream_id
        problem = misfiled(recorded)
        if problem is not None:
            done.give_up(stream_id, problem)
        elif stream_id in unfoldable:
            count, first = unfoldable[stream_id]
            done.give_up(
                stream_id,
                f"stream {stream_id} holds {count} event(s) from version {first}: an order's "
                "stream holds one, version 1",
            )
        else:
            wanted[stream_id] = expected_row(recorded, evolve(None, recorded.event))
    return {key: row for key, row in wanted.items() if not done.gave_up(key)}


async def _write(conn: AsyncConnection, *, wanted: Mapping[uuid.UUID, Row], done: Rebuilt) -> None:
    """Make the rows of ``wanted``'s bookings what it says, their rows locked first."""
    query = select(orders).where(orders.c.booking_id.in_(wanted.keys())).with_for_update()
    current = {row.booking_id: stored_row(row) for row in await conn.execute(query)}
    for booking_id, want in wanted.items():
        have = current.get(booking_id)
        if have is not None and not differing(have, want):
            continue
        if have is None or have["id"] != want["id"]:
            # The id is this stream's own (its order's, or its event's): a row of another
            # booking holding it is wrong.
            taken = await conn.execute(
                delete(orders).where(orders.c.id == want["id"], orders.c.booking_id != booking_id)
            )
            done.deleted["orders"] += taken.rowcount
        if have is None:
            await conn.execute(insert(orders).values(**want))
        else:
            await conn.execute(
                update(orders).where(orders.c.booking_id == booking_id).values(**want)
            )
        done.written["orders"] += 1


async def _delete_orphans(engine: AsyncEngine, done: Rebuilt) -> None:
    """Delete the rows of bookings that have no stream. Each candidate's row is locked and the
    store asked again: a row always commits with its event, so one whose stream can be read
    now is no orphan."""
    no_stream = ~exists().where(event_store.c.stream_id == orders.c.booking_id)
    async with engine.connect() as conn:
        strays = list((await conn.execute(select(orders.c.booking_id).where(no_stream))).scalars())

    async def drop(conn: AsyncConnection, *, chunk: list[uuid.UUID]) -> None:
        locked = select(orders.c.booking_id).where(orders.c.booking_id.in_(chunk))
        await conn.execute(locked.with_for_update())
        gone = await conn.execute(delete(orders).where(orders.c.booking_id.in_(chunk), no_stream))
        done.deleted["orders"] += gone.rowcount

    for start in range(0, len(strays), PAGE):
        chunk = strays[start : start + PAGE]
        await run_transaction(engine, functools.partial(drop, chunk=chunk))
