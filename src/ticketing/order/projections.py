"""Order's projection (``orders``) checked against its events and rebuilt from them.

``ticketing projections verify --service order`` prints every difference; ``ticketing
projections rebuild --service order`` rewrites every row the events disagree with, while the
saga keeps running. A booking's stream holds its verdict and, for a confirmed order whose
seats went back, its release: both read the store a page at a time in position order.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.order.domain import OrderState
from ticketing.order.repository import ORDER_COLUMNS, STORE, fold, order_row, read_streams
from ticketing.order.tables import event_store, orders
from ticketing.shared.db.engine import run_transaction
from ticketing.shared.errors import ImpossibleHistory
from ticketing.shared.store.eventstore import Recorded
from ticketing.shared.store.projections import Rebuilt, all_streams, snapshot

PAGE = 1000
TABLES = ("orders",)
Row = dict[str, Any]


def expected_row(history: Sequence[Recorded], state: OrderState) -> Row:
    """The row ``state`` (the fold of ``history``) makes: created when its verdict was recorded."""
    return order_row(state, history[0].recorded_at.replace(tzinfo=None))


def stored_row(row: Any) -> Row:
    return {column: getattr(row, column) for column in ORDER_COLUMNS}


def differing(have: Row, want: Row) -> list[str]:
    """The columns whose values the table and the events disagree on."""
    return [column for column in ORDER_COLUMNS if have[column] != want[column]]


# --- verify


async def folded(conn: AsyncConnection, problems: list[str]) -> dict[uuid.UUID, Row | None]:
    """The ``orders`` rows the events say, by booking id; None for a stream that cannot be
    folded, which is added to ``problems`` (its row is left out of the comparison)."""
    rows: dict[uuid.UUID, Row | None] = {}
    for stream_id, history in (await all_streams(STORE, conn, page=PAGE)).items():
        try:
            rows[stream_id] = expected_row(history, fold(history))
        except ImpossibleHistory as error:
            problems.append(str(error))
            rows[stream_id] = None
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
    """Every difference between order's events and its table (empty: they agree), read in one
    :func:`~ticketing.shared.store.projections.snapshot` so that verdicts recorded meanwhile
    are seen in both or in neither."""
    problems: list[str] = []
    async with snapshot(engine) as conn:
        folds = await folded(conn, problems)
        actual = {row.booking_id: stored_row(row) for row in await conn.execute(select(orders))}
    expected = {key: row for key, row in folds.items() if row is not None}
    unfolded = {key for key, row in folds.items() if row is None}
    checked = {key: row for key, row in actual.items() if key not in unfolded}
    return problems + list(differences(expected, checked))


# --- rebuild


async def rebuild(engine: AsyncEngine) -> Rebuilt:
    """Rewrite every ``orders`` row from the events, in place, while the saga keeps running.

    The store is read a page at a time; for the streams of each page, their rows are locked,
    then the streams read whole and the rows written as their folds say, in one transaction. A
    release changes its row with its event, and waits for that lock: a release that commits
    first is in the streams read, one that commits later changes the row after. (A row missing
    while its order is released may be written as the confirmed order; the next verify names
    it.) Rows that no stream accounts for are deleted, and streams that cannot be folded are
    reported and left.
    """
    done = Rebuilt(TABLES)
    after = 0
    while True:
        async with engine.connect() as conn:
            page = await STORE.page(conn, after=after, limit=PAGE)
        if not page:
            break
        after = page[-1].position
        bookings = sorted({r.stream_id for r in page if not done.gave_up(r.stream_id)}, key=str)
        if bookings:
            await run_transaction(engine, functools.partial(_write, bookings=bookings, done=done))
    await _delete_orphans(engine, done)
    return done


async def _write(conn: AsyncConnection, *, bookings: Sequence[uuid.UUID], done: Rebuilt) -> None:
    """Make the rows of ``bookings`` what their streams say, their rows locked first."""
    query = select(orders).where(orders.c.booking_id.in_(bookings)).with_for_update()
    current = {row.booking_id: stored_row(row) for row in await conn.execute(query)}
    streams = await read_streams(conn, bookings)
    for booking_id in bookings:
        history = streams.get(booking_id)
        if not history:
            continue
        try:
            want = expected_row(history, fold(history))
        except ImpossibleHistory as error:
            done.give_up(booking_id, str(error))
            continue
        have = current.get(booking_id)
        if have is not None and not differing(have, want):
            continue
        if have is None or have["id"] != want["id"]:
            # The id is this stream's own (its order's, or its rejection's): a row of another
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
