"""The order saga step: reserve at inventory, then record the outcome as the event of the
booking's order stream, with its projection, in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.contracts.events import BookingRequested
from ticketing.contracts.inventory import ReservationItem, ReservationOutcome
from ticketing.order.domain import decide
from ticketing.order.inventory_client import InventoryClient
from ticketing.order.repository import outcome_statements
from ticketing.order.tables import inbox
from ticketing.shared import inbox as inbox_ops
from ticketing.shared import sql
from ticketing.shared.clock import utcnow
from ticketing.shared.consumer import Received
from ticketing.shared.db import is_duplicate_key, run_transaction
from ticketing.shared.eventstore import Cause
from ticketing.shared.ids import new_id
from ticketing.shared.observability import correlation_id_bound, current_correlation_id

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

    async def already_applied(self, message_id: uuid.UUID) -> bool:
        async with self._engine.connect() as conn:
            return await inbox_ops.seen(conn, inbox, CONSUMER, message_id)

    async def handle_booking_requested(self, event: BookingRequested) -> bool:
        """Apply one BookingRequested; False when this message was already applied.

        The reservation is idempotent by booking id, so calling it again after a crash is safe;
        the inbox row, the outcome event and the order row then commit together.
        """
        if await self.already_applied(event.message_id):
            return False
        answer = await self._reserve(event)
        now = utcnow()
        outcome = decide(
            event, answer, order_id=new_id(), message_id=new_id(), now=now.replace(tzinfo=UTC)
        )
        statements = outcome_statements([(outcome, cause_of(event, current_correlation_id()))], now)

        async def work(conn: AsyncConnection) -> bool:
            if not await inbox_ops.claim(conn, inbox, CONSUMER, event.message_id):
                return False
            for statement in statements:
                await sql.run(conn, statement)
            return True

        try:
            applied = await run_transaction(self._engine, work)
        except IntegrityError as error:
            if not is_duplicate_key(error):
                raise
            # Another message for the same booking was applied already: its stream has its
            # only event, and a booking never gets a second order.
            log.warning("booking already has an order", booking_id=str(event.booking_id))
            return False
        if applied:
            self._after_commit()
            log.info(
                "booking settled", booking_id=str(event.booking_id), outcome=type(outcome).__name__
            )
        return applied

    async def handle_batch(self, received: Sequence[Received]) -> None:
        """Apply a batch of BookingRequested: one reservation call, one transaction.

        Further messages for a booking that comes twice are skipped. The common case (no message
        of the batch was applied before) costs one call and one round trip with the COMMIT. If
        one was (a redelivery: its reservation is idempotent and answers as before), the inbox
        insert fails on its key, nothing of the batch is recorded, and each message goes through
        :meth:`handle_booking_requested`, which skips the ones applied already. So does a
        booking that has its outcome already, on the store's unique stream version.
        """
        firsts: dict[uuid.UUID, Received] = {}
        for item in received:
            firsts.setdefault(item.event.booking_id, item)
        todo = list(firsts.values())
        answers = await self._inventory.reserve_many(
            [reservation_item(item.event, item.correlation_id) for item in todo]
        )
        now = utcnow()
        outcomes = [
            (
                decide(
                    item.event,
                    answer.outcome,
                    order_id=new_id(),
                    message_id=new_id(),
                    now=now.replace(tzinfo=UTC),
                ),
                cause_of(item.event, item.correlation_id),
            )
            for item, answer in zip(todo, answers, strict=True)
        ]
        statements = [
            inbox_ops.claim_all_statement(inbox, CONSUMER, [i.event.message_id for i in todo]),
            *outcome_statements(outcomes, now),
        ]

        async def work(conn: AsyncConnection) -> None:
            await sql.commit_all(conn, statements)

        try:
            await run_transaction(self._engine, work, commits_itself=True)
        except IntegrityError as error:
            if not is_duplicate_key(error):
                raise
            log.info("batch holds messages applied before; applying one by one")
            for item in todo:
                with correlation_id_bound(item.correlation_id):
                    await self.handle_booking_requested(item.event)
            return
        self._after_commit()
        log.info("bookings settled", count=len(todo))

    async def _reserve(self, event: BookingRequested) -> ReservationOutcome:
        correlation_id = current_correlation_id()
        (answer,) = await self._inventory.reserve_many(
            [reservation_item(event, correlation_id)], correlation_id=correlation_id
        )
        return answer.outcome


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
