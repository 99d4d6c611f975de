"""Order's database adapter: its event store (which is also its outbox) and the ``orders``
projection, written together on the paths every booking takes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.contracts.events import PUBLICATIONS
from ticketing.order.domain import EVENT_TYPES, ORDER_STREAM, OrderEvent, OrderState, evolve
from ticketing.order.tables import event_store, inbox, orders
from ticketing.shared import inbox as inbox_ops
from ticketing.shared import sql
from ticketing.shared.clock import utcnow
from ticketing.shared.db import is_duplicate_key
from ticketing.shared.eventstore import Cause, EventCodec, EventStore, Pending
from ticketing.shared.unit_of_work import AlreadyRecorded, UnitOfWork, in_unit_of_work

STORE = EventStore(event_store, EventCodec(EVENT_TYPES), PUBLICATIONS)

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


def order_row(state: OrderState, recorded_at: datetime) -> dict[str, Any]:
    """The ``orders`` row of a booking's order, whose event was recorded at ``recorded_at``
    (naive UTC): the service writes it with the event, and a rebuild writes it from the event."""
    return {
        "id": state.id,
        "booking_id": state.booking_id,
        "event_id": state.event_id,
        "ticket_count": state.ticket_count,
        "total_price": state.total_price,
        "status": state.status.value,
        "reason": state.reason,
        "created_at": recorded_at,
    }


def outcome_statements(
    outcomes: Sequence[tuple[OrderEvent, Cause]], now: datetime
) -> list[sql.Statement]:
    """The statements recording the saga's outcomes (not empty), each with its cause, at
    ``now`` (naive UTC), for :func:`ticketing.shared.sql.commit_all` or one by one: the events
    first, as version 1 of their bookings' streams, so that a booking that has its outcome
    already fails on the store's unique key (1062) before anything else is written; then their
    ``orders`` rows."""
    pending = [
        Pending(event.booking_id, ORDER_STREAM, 1, event, cause) for event, cause in outcomes
    ]
    rows = [order_row(evolve(None, event), now) for event, _ in outcomes]
    return [
        STORE.append(pending, outcomes[0][1], now),
        sql.Statement(
            _ADD_ORDERS,
            [
                (
                    str(row["id"]),
                    str(row["booking_id"]),
                    str(row["event_id"]),
                    *(row[column] for column in ORDER_COLUMNS[3:]),
                )
                for row in rows
            ],
            rows=True,
        ),
    ]


class SqlOrderRecords:
    """Order's records in its database: the inbox claims, the outcome events (the outbox) and
    the ``orders`` projection, written in one unit of work."""

    def __init__(self, engine: AsyncEngine, *, consumer: str) -> None:
        self._engine = engine
        self._consumer = consumer

    async def record(
        self,
        message_ids: Sequence[uuid.UUID],
        decide_at: Callable[[datetime], Sequence[tuple[OrderEvent, Cause]]],
    ) -> None:
        async def work(uow: UnitOfWork) -> None:
            # The time is taken here, with a connection in hand and just before the transaction
            # begins: an export split at a moment never misses an event still committing.
            now = utcnow()
            outcomes = decide_at(now.replace(tzinfo=UTC))
            if message_ids:
                uow.write(inbox_ops.claim_all_statement(inbox, self._consumer, message_ids))
            if outcomes:
                uow.write(*outcome_statements(outcomes, now))

        try:
            await in_unit_of_work(self._engine, work)
        except IntegrityError as error:
            if is_duplicate_key(error):
                raise AlreadyRecorded(str(error.orig)) from error
            raise

    async def has_outcome(self, booking_id: uuid.UUID) -> bool:
        async with self._engine.connect() as conn:
            return bool(await STORE.stream_page(conn, booking_id, after_version=0, limit=1))
