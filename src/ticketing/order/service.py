"""The order saga step: reserve at inventory, then record the outcome with its event."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.contracts.events import ORDERS_TOPIC, BookingRequested, OrderConfirmed, OrderRejected
from ticketing.contracts.inventory import ReservationItem
from ticketing.order.domain import OrderStatus, RejectionReason, outcome_of_item
from ticketing.order.inventory_client import InventoryClient
from ticketing.order.repository import add_orders, add_orders_statement
from ticketing.order.tables import inbox, outbox
from ticketing.shared import inbox as inbox_ops
from ticketing.shared import outbox as outbox_ops
from ticketing.shared import sql
from ticketing.shared.consumer import Received
from ticketing.shared.db import is_duplicate_key, run_transaction
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
        the inbox row, the order and the outcome event then commit together.
        """
        if await self.already_applied(event.message_id):
            return False
        status, reason = await self._reserve(event)
        order_id = new_id() if status is OrderStatus.CONFIRMED else None
        outcome = _outcome_event(event, order_id, reason)

        async def work(conn: AsyncConnection) -> bool:
            if not await inbox_ops.claim(conn, inbox, CONSUMER, event.message_id):
                return False
            await add_orders(conn, [_order_row(event, order_id, status, reason)])
            await outbox_ops.append(conn, outbox, [_outbox_row(outcome, current_correlation_id())])
            return True

        try:
            applied = await run_transaction(self._engine, work)
        except IntegrityError as error:
            if not is_duplicate_key(error):
                raise
            # Another message for the same booking was applied already: never a second order.
            log.warning("booking already has an order", booking_id=str(event.booking_id))
            return False
        if applied:
            self._after_commit()
            log.info("booking settled", booking_id=str(event.booking_id), status=status.value)
        return applied

    async def handle_batch(self, received: Sequence[Received]) -> None:
        """Apply a batch of BookingRequested: one reservation call, one transaction.

        Further messages for a booking that comes twice are skipped. The common case (no message
        of the batch was applied before) costs one call and one transaction. If one was (a
        redelivery: its reservation is idempotent and answers as before), the inbox insert
        fails on its key, nothing of the batch is recorded, and each message goes through
        :meth:`handle_booking_requested`, which skips the ones applied already.
        """
        firsts: dict[uuid.UUID, Received] = {}
        for item in received:
            firsts.setdefault(item.event.booking_id, item)
        todo = list(firsts.values())
        answers = await self._inventory.reserve_many(
            [reservation_item(item.event, item.correlation_id) for item in todo]
        )
        orders_rows, outbox_rows = [], []
        for item, answer in zip(todo, answers, strict=True):
            event: BookingRequested = item.event
            status, reason = outcome_of_item(answer.outcome)
            order_id = new_id() if status is OrderStatus.CONFIRMED else None
            orders_rows.append(_order_row(event, order_id, status, reason))
            outbox_rows.append(
                _outbox_row(_outcome_event(event, order_id, reason), item.correlation_id)
            )

        async def work(conn: AsyncConnection) -> None:
            await sql.commit_all(
                conn,
                [
                    inbox_ops.claim_all_statement(
                        inbox, CONSUMER, [i.event.message_id for i in todo]
                    ),
                    add_orders_statement(orders_rows),
                    outbox_ops.append_statement(outbox, outbox_rows),
                ],
            )

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

    async def _reserve(self, event: BookingRequested) -> tuple[OrderStatus, RejectionReason | None]:
        correlation_id = current_correlation_id()
        (answer,) = await self._inventory.reserve_many(
            [reservation_item(event, correlation_id)], correlation_id=correlation_id
        )
        return outcome_of_item(answer.outcome)


def reservation_item(event: BookingRequested, correlation_id: str | None) -> ReservationItem:
    """The reservation a BookingRequested asks for, naming the message as its cause."""
    return ReservationItem(
        event.event_id,
        event.booking_id,
        event.ticket_count,
        causation_id=str(event.message_id),
        correlation_id=correlation_id,
    )


def _outcome_event(
    event: BookingRequested, order_id: uuid.UUID | None, reason: RejectionReason | None
) -> OrderConfirmed | OrderRejected:
    now = datetime.now(UTC)
    if order_id is not None:
        return OrderConfirmed(
            message_id=new_id(),
            order_id=order_id,
            booking_id=event.booking_id,
            event_id=event.event_id,
            ticket_count=event.ticket_count,
            total_price=event.total_price,
            confirmed_at=now,
        )
    return OrderRejected(
        message_id=new_id(),
        booking_id=event.booking_id,
        event_id=event.event_id,
        reason=(reason or RejectionReason.INSUFFICIENT_CAPACITY).value,
        rejected_at=now,
    )


def _order_row(
    event: BookingRequested,
    order_id: uuid.UUID | None,
    status: OrderStatus,
    reason: RejectionReason | None,
) -> dict[str, Any]:
    """The order row recording the saga's outcome for ``event``'s booking."""
    return {
        "id": order_id or new_id(),
        "booking_id": event.booking_id,
        "event_id": event.event_id,
        "ticket_count": event.ticket_count,
        "total_price": Decimal(event.total_price),
        "status": status.value,
        "reason": None if reason is None else reason.value,
        "created_at": outbox_ops.utcnow(),
    }


def _outbox_row(
    outcome: OrderConfirmed | OrderRejected, correlation_id: str | None
) -> dict[str, Any]:
    return outbox_ops.build_row(
        outcome,
        topic=ORDERS_TOPIC,
        key=str(outcome.booking_id),
        aggregate_type="order",
        aggregate_id=str(outcome.booking_id),
        correlation_id=correlation_id,
    )
