"""Order's database adapter: its event store (which is also its outbox) and the ``orders``
projection, written together on the paths every booking takes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.contracts.events import PUBLICATIONS, OrderReleased
from ticketing.order.domain import (
    EVENT_TYPES,
    ORDER_STREAM,
    OrderEvent,
    OrderState,
    OrderStatus,
    evolve,
    version_of,
)
from ticketing.order.tables import event_store, inbox, orders
from ticketing.shared.clock import utcnow
from ticketing.shared.db import sql
from ticketing.shared.db.engine import is_duplicate_key
from ticketing.shared.db.unit_of_work import AlreadyRecorded, UnitOfWork, in_unit_of_work
from ticketing.shared.errors import ImpossibleHistory
from ticketing.shared.messaging import inbox as inbox_ops
from ticketing.shared.store.codec import EventCodec
from ticketing.shared.store.eventstore import Cause, EventStore, Pending, Recorded

STORE = EventStore(event_store, EventCodec(EVENT_TYPES), PUBLICATIONS)
STREAMS_PAGE = 1000
_LAST_POSITION = 2**63 - 1

ORDER_COLUMNS = (
    "id",
    "booking_id",
    "event_id",
    "ticket_count",
    "total_price",
    "status",
    "reason",
    "created_at",
)
_ADD_ORDERS = sql.insert_sql(orders, ORDER_COLUMNS)
_RELEASE_ORDER = (
    f"UPDATE {sql.quote(orders.name)} SET status = %s, reason = %s WHERE booking_id = %s"  # noqa: S608 - our names
)

Changes = Sequence[tuple[OrderEvent, Cause]]


def order_row(state: OrderState, created_at: datetime) -> dict[str, Any]:
    """The ``orders`` row of a booking's order, whose verdict (the stream's first event) was
    recorded at ``created_at`` (naive UTC): the service writes it with the events, and a
    rebuild writes it from them."""
    return {
        "id": state.id,
        "booking_id": state.booking_id,
        "event_id": state.event_id,
        "ticket_count": state.ticket_count,
        "total_price": state.total_price,
        "status": state.status.value,
        "reason": state.reason,
        "created_at": created_at,
    }


def change_statements(changes: Changes, now: datetime) -> list[sql.Statement]:
    """The statements recording the saga's changes (not empty), each event with its cause, at
    ``now`` (naive UTC), for :func:`ticketing.shared.db.sql.commit_all` or one by one: the events
    first, each at its version of its booking's stream (a verdict 1, a release 2), so that a
    booking that has that event already fails on the store's unique key (1062) before
    anything else is written; then the verdicts' new ``orders`` rows, and the releases'
    changes to theirs."""
    pending = [
        Pending(event.booking_id, ORDER_STREAM, version_of(event), event, cause)
        for event, cause in changes
    ]
    statements = [STORE.append(pending, changes[0][1], now)]
    verdicts = [event for event, _ in changes if not isinstance(event, OrderReleased)]
    if verdicts:
        rows = [order_row(evolve(None, event), now) for event in verdicts]
        params = [
            (
                str(row["id"]),
                str(row["booking_id"]),
                str(row["event_id"]),
                *(row[column] for column in ORDER_COLUMNS[3:]),
            )
            for row in rows
        ]
        statements.append(sql.Statement(_ADD_ORDERS, params, rows=True))
    statements += [
        sql.Statement(
            _RELEASE_ORDER, (OrderStatus.RELEASED.value, event.reason, str(event.booking_id))
        )
        for event, _ in changes
        if isinstance(event, OrderReleased)
    ]
    return statements


def misfiled(recorded: Recorded) -> str | None:
    """Why ``recorded`` cannot be an event of its stream, if it cannot: an order's stream is
    of type ``order`` and named by the booking id."""
    where = f"stream {recorded.stream_id}: event at position {recorded.position}"
    if recorded.stream_type != ORDER_STREAM:
        return f"{where} is in a stream of type {recorded.stream_type!r}, not {ORDER_STREAM!r}"
    if recorded.event.booking_id != recorded.stream_id:
        return f"{where} is an event of booking {recorded.event.booking_id}"
    return None


def fold(history: Sequence[Recorded]) -> OrderState:
    """A booking's order from its stream's events in version order; raises ImpossibleHistory,
    saying where, for a stream that cannot be an order's."""
    state: OrderState | None = None
    for recorded in history:
        problem = misfiled(recorded)
        if problem is not None:
            raise ImpossibleHistory(problem)
        try:
            state = evolve(state, recorded.event)
        except ImpossibleHistory as error:
            raise ImpossibleHistory(
                f"stream {recorded.stream_id} cannot be folded at position "
                f"{recorded.position}: {error}"
            ) from None
        if state.version != recorded.version:
            raise ImpossibleHistory(
                f"stream {recorded.stream_id}: event at position {recorded.position} is "
                f"version {recorded.version}, the fold is at {state.version}"
            )
    if state is None:
        raise ImpossibleHistory("an order's stream holds at least its outcome")
    return state


async def read_streams(
    conn: AsyncConnection, booking_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[Recorded]]:
    """The events of the streams of ``booking_ids`` that have any, each stream in version
    order, found through the store's ``(stream_id, version)`` key."""
    ids = [str(booking_id) for booking_id in set(booking_ids)]
    found: dict[uuid.UUID, list[Recorded]] = {}
    after = 0
    while ids:
        page = await STORE.streams_page(
            conn,
            sql.placeholders(len(ids)),
            ids,
            after=after,
            upto=_LAST_POSITION,
            limit=STREAMS_PAGE,
        )
        for recorded in page:
            found.setdefault(recorded.stream_id, []).append(recorded)
        if len(page) < STREAMS_PAGE:
            break
        after = page[-1].position
    for history in found.values():
        history.sort(key=lambda recorded: recorded.version)
    return found


class SqlOrderRecords:
    """Order's records in its database: the inbox claims, the order events (the outbox) and
    the ``orders`` projection, written in one unit of work."""

    def __init__(self, engine: AsyncEngine, *, consumer: str) -> None:
        self._engine = engine
        self._consumer = consumer

    async def record(
        self,
        message_ids: Sequence[uuid.UUID],
        decide_at: Callable[[datetime], Changes],
    ) -> None:
        async def work(uow: UnitOfWork) -> None:
            # The time is taken here, with a connection in hand and just before the transaction
            # begins: an export split at a moment never misses an event still committing.
            now = utcnow()
            changes = decide_at(now.replace(tzinfo=UTC))
            if message_ids:
                uow.write(inbox_ops.claim_all_statement(inbox, self._consumer, message_ids))
            if changes:
                uow.write(*change_statements(changes, now))

        try:
            await in_unit_of_work(self._engine, work)
        except IntegrityError as error:
            if is_duplicate_key(error):
                raise AlreadyRecorded(str(error.orig)) from error
            raise

    async def has_verdict(self, booking_id: uuid.UUID) -> bool:
        async with self._engine.connect() as conn:
            return bool(await STORE.stream_page(conn, booking_id, after_version=0, limit=1))

    async def orders(self, booking_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, OrderState]:
        async with self._engine.connect() as conn:
            streams = await read_streams(conn, booking_ids)
        return {booking_id: fold(history) for booking_id, history in streams.items()}
