"""The order saga step: reserve at inventory, then record the outcome as the event of the
booking's order stream, with its projection, in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.contracts.events import BookingRequested
from ticketing.contracts.inventory import ReservationItem
from ticketing.order.domain import decide
from ticketing.order.inventory_client import InventoryClient
from ticketing.order.repository import STORE, outcome_statements
from ticketing.order.tables import inbox
from ticketing.shared import inbox as inbox_ops
from ticketing.shared.clock import utcnow
from ticketing.shared.consumer import Received
from ticketing.shared.db import is_duplicate_key
from ticketing.shared.eventstore import Cause
from ticketing.shared.ids import new_id
from ticketing.shared.unit_of_work import UnitOfWork, in_unit_of_work

CONSUMER = "order-service"
log = structlog.get_logger(__name__)


class OrderService:
    def __init__(
        self,
        engine: AsyncEngine,
        inventory: InventoryClient,
        *,
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._inventory = inventory
        self._after_commit = after_commit

    async def handle_batch(self, received: Sequence[Received]) -> None:
        """Apply a batch of BookingRequested: one reservation call, then the inbox claims, the
        outcome events and the orders with the ``COMMIT`` in one round trip.

        Further messages for a booking that comes twice are skipped. If a message was applied
        before (a redelivery: its reservation is idempotent and answers as before), the inbox
        insert fails on its key; if its booking has its outcome already (another message for
        it), the store's unique stream version fails. Either way nothing of the batch is
        recorded: alone, the message was simply applied already; in a batch, the error goes to
        the consumer's runner, which hands each message over alone.
        """
        firsts: dict[uuid.UUID, Received] = {}
        for item in received:
            firsts.setdefault(item.event.booking_id, item)
        todo = list(firsts.values())
        answers = await self._inventory.reserve_many(
            [reservation_item(item.event, item.correlation_id) for item in todo]
        )
        ids = [(new_id(), new_id()) for _ in todo]  # (order, message): the same on a retry

        async def work(uow: UnitOfWork) -> None:
            # The time is taken here, with a connection in hand and just before the transaction
            # begins: an export split at a moment never misses an event still committing.
            now = utcnow()
            outcomes = [
                (
                    decide(
                        item.event,
                        answer.outcome,
                        order_id=order_id,
                        message_id=message_id,
                        now=now.replace(tzinfo=UTC),
                    ),
                    cause_of(item.event, item.correlation_id),
                )
                for item, answer, (order_id, message_id) in zip(todo, answers, ids, strict=True)
            ]
            claims = inbox_ops.claim_all_statement(
                inbox, CONSUMER, [i.event.message_id for i in todo]
            )
            uow.write(claims, *outcome_statements(outcomes, now))

        try:
            await in_unit_of_work(self._engine, work)
        except IntegrityError as error:
            if not is_duplicate_key(error) or len(todo) > 1:
                raise
            (alone,) = todo
            applied = await inbox_ops.seen(self._engine, inbox, CONSUMER, alone.event.message_id)
            if not applied and not await self._has_outcome(alone.event.booking_id):
                raise  # another key (an orders row with no event): never acked
            log.info("booking request applied before", booking_id=str(alone.event.booking_id))
            return
        self._after_commit()
        log.info("bookings settled", count=len(todo))

    async def _has_outcome(self, booking_id: uuid.UUID) -> bool:
        """Whether the booking's order stream holds its outcome (from another message)."""
        async with self._engine.connect() as conn:
            return bool(await STORE.stream_page(conn, booking_id, after_version=0, limit=1))


def cause_of(event: BookingRequested, correlation_id: str | None) -> Cause:
    """The cause stored with the outcome of ``event``: this consumer, the message's
    correlation id, and the message itself."""
    return Cause(actor=CONSUMER).caused_by(str(event.message_id), correlation_id)


def reservation_item(event: BookingRequested, correlation_id: str | None) -> ReservationItem:
    """The reservation a BookingRequested asks for, naming the message as its cause."""
    return ReservationItem(
        event.event_id,
        event.booking_id,
        event.ticket_count,
        causation_id=str(event.message_id),
        correlation_id=correlation_id,
    )
