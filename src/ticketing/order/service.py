"""The order saga step: reserve at inventory, then record the outcome as the event of the
booking's order stream, with its projection, in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import structlog

from ticketing.contracts.events import BookingRequested
from ticketing.contracts.inventory import ReservationItem, ReservationItemResult
from ticketing.order.domain import OrderEvent, decide
from ticketing.shared.consumer import Received
from ticketing.shared.eventstore import Cause
from ticketing.shared.ids import new_id
from ticketing.shared.unit_of_work import AlreadyRecorded

CONSUMER = "order-service"
log = structlog.get_logger(__name__)


Outcomes = Sequence[tuple[OrderEvent, Cause]]


class OrderRecords(Protocol):
    """Where the saga step records what it decided (the port its use case needs; the SQL
    adapter is :class:`ticketing.order.repository.SqlOrderRecords`)."""

    async def record(
        self, message_ids: Sequence[uuid.UUID], decide_at: Callable[[datetime], Outcomes]
    ) -> None:
        """In one transaction: claim the messages, and record the outcomes ``decide_at`` gives
        for the time of the transaction. Raises :class:`AlreadyRecorded` (and records
        nothing) when a message was claimed or a booking's outcome recorded before."""

    async def has_outcome(self, booking_id: uuid.UUID) -> bool:
        """Whether the booking's order stream holds its outcome."""


class Reserver(Protocol):
    """The inventory call the saga step makes (the client over HTTP, or a stand-in)."""

    async def reserve_many(
        self, items: list[ReservationItem], *, correlation_id: str | None = None
    ) -> list[ReservationItemResult]: ...


class OrderService:
    def __init__(
        self,
        records: OrderRecords,
        inventory: Reserver,
        *,
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._records = records
        self._inventory = inventory
        self._after_commit = after_commit

    async def handle_batch(self, received: Sequence[Received]) -> None:
        """Apply a batch of BookingRequested: one reservation call, then the inbox claims, the
        outcome events and the orders in one transaction.

        Further messages for a booking that comes twice are skipped. If a message was applied
        before (a redelivery: its reservation is idempotent and answers as before), or its
        booking has its outcome already (another message for it), nothing of the batch is
        recorded: alone, its booking's outcome is there already and it is skipped; in a batch,
        the error goes to the consumer's runner, which hands each message over alone.
        """
        firsts: dict[uuid.UUID, Received] = {}
        for item in received:
            firsts.setdefault(item.event.booking_id, item)
        todo = list(firsts.values())
        answers = await self._inventory.reserve_many(
            [reservation_item(item.event, item.correlation_id) for item in todo]
        )
        ids = [(new_id(), new_id()) for _ in todo]  # (order, message): the same on a retry

        def decide_at(now: datetime) -> Outcomes:
            return [
                (
                    decide(
                        item.event,
                        answer.outcome,
                        order_id=order_id,
                        message_id=message_id,
                        now=now,
                    ),
                    cause_of(item.event, item.correlation_id),
                )
                for item, answer, (order_id, message_id) in zip(todo, answers, ids, strict=True)
            ]

        try:
            await self._records.record([i.event.message_id for i in todo], decide_at)
        except AlreadyRecorded:
            if len(todo) > 1:
                raise
            (alone,) = todo
            # Acked only when its booking's outcome is recorded: every message claimed records
            # its booking's outcome with it, so a claimed id without one is another booking's
            # (a producer's bug), and a taken key without one is a stale projection.
            if not await self._records.has_outcome(alone.event.booking_id):
                raise
            log.info("booking request applied before", booking_id=str(alone.event.booking_id))
            return
        self._after_commit()
        log.info("bookings settled", count=len(todo))


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
