"""The order saga's steps: reserve at inventory for a booking request, or give a confirmed
order's seats back for a cancellation or an expired hold; then record what was decided as the
events of the bookings' order streams, with their projection, in one transaction."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

import structlog

from ticketing.contracts.events import (
    ORDER_SUBSCRIPTION,
    BookingEvent,
    BookingRequested,
    SeatRelease,
)
from ticketing.contracts.inventory import (
    ReleaseItem,
    ReleaseItemResult,
    ReservationItem,
    ReservationItemResult,
)
from ticketing.order.domain import (
    ImpossibleRelease,
    OrderEvent,
    OrderState,
    OrderStatus,
    check_released,
    decide_release,
    decide_verdict,
    release_reason,
    to_release,
)
from ticketing.shared import tally
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.ids import new_id
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause

CONSUMER = ORDER_SUBSCRIPTION.group
log = structlog.get_logger(__name__)


Changes = Sequence[tuple[OrderEvent, Cause]]


class OrderRecords(Protocol):
    """Where the saga records what it decided (the port its use case needs; the SQL adapter
    is :class:`ticketing.order.repository.SqlOrderRecords`)."""

    async def record(
        self, message_ids: Sequence[uuid.UUID], decide_at: Callable[[datetime], Changes]
    ) -> None:
        """In one transaction: claim the messages, and record the events ``decide_at`` gives
        for the time of the transaction, each at its version of its booking's stream (a
        verdict 1, a release 2). Raises :class:`AlreadyRecorded` (and records nothing) when a
        message was claimed or a booking's stream holds that version before."""

    async def has_verdict(self, booking_id: uuid.UUID) -> bool:
        """Whether the booking's order stream holds its verdict."""

    async def orders(self, booking_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, OrderState]:
        """The orders of ``booking_ids`` as their streams say; a booking with no stream is
        left out. Raises ImpossibleHistory for a stream that cannot be an order's."""


class Reserver(Protocol):
    """The inventory call a booking request needs (the client over HTTP, or a stand-in)."""

    async def reserve_many(
        self, items: list[ReservationItem], *, correlation_id: str | None = None
    ) -> list[ReservationItemResult]: ...


class Releaser(Protocol):
    """The inventory call a release needs (the client over HTTP, or a stand-in)."""

    async def release_many(
        self, items: list[ReleaseItem], *, correlation_id: str | None = None
    ) -> list[ReleaseItemResult]: ...


class Inventory(Reserver, Releaser, Protocol):
    """Inventory as the saga uses it."""


class OrderService:
    def __init__(
        self,
        records: OrderRecords,
        inventory: Inventory,
        *,
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._records = records
        self._inventory = inventory
        self._after_commit = after_commit

    async def handle_batch(self, received: Sequence[Received]) -> None:
        """Apply a batch of BookingRequested, BookingCancelled and HoldExpired: at most one
        release call and one reservation call (in that order, so that the batch's requests may
        take the seats given back), then the inbox claims and the events with their orders in
        one transaction.

        Further messages for a booking that comes twice (as a request, or as a release) are
        skipped, and so is a release whose order is released already. If a message was applied
        before (a redelivery: its reservation or release is idempotent and answers as before),
        or its booking has that event already (another message for it), nothing of the batch
        is recorded: alone, its booking's event is there already and it is skipped; in a
        batch, the error goes to the consumer's runner, which hands each message over alone.
        A release that cannot be (:class:`ImpossibleRelease`) fails the batch the same way,
        and alone is never acknowledged.
        """
        requests: dict[uuid.UUID, Received] = {}
        releases: dict[uuid.UUID, Received] = {}
        for item in received:
            into = requests if isinstance(item.event, BookingRequested) else releases
            into.setdefault(item.event.booking_id, item)
        asked = list(requests.values())
        releasing = await self._still_reserved(list(releases.values()))
        # Seats given back first: the requests of the batch may take them.
        released = await self._release(releasing) if releasing else []
        answers = await self._reserve(asked) if asked else []
        ids = [(new_id(), new_id()) for _ in asked]  # (order, message): the same on a retry
        release_ids = [new_id() for _ in releasing]

        def decide_at(now: datetime) -> Changes:
            verdicts = [
                (
                    decide_verdict(
                        item.event, answer.outcome, order_id=order, message_id=message, now=now
                    ),
                    item.caused(CONSUMER),
                )
                for item, answer, (order, message) in zip(asked, answers, ids, strict=True)
            ]
            return verdicts + [
                (
                    decide_release(state, item.event, answer, message_id=message, now=now),
                    item.caused(CONSUMER),
                )
                for (item, state), answer, message in zip(
                    releasing, released, release_ids, strict=True
                )
            ]

        todo = asked + [item for item, _ in releasing]
        if not todo:
            log.info("seats released before", count=len(releases))
            return
        try:
            await self._records.record([i.event.message_id for i in todo], decide_at)
        except AlreadyRecorded:
            if len(todo) > 1:
                raise
            (alone,) = todo
            # Acked only when its booking's event is recorded: every message claimed records
            # its booking's event with it, so a claimed id without one is another booking's
            # (a producer's bug), and a taken key without one is a stale projection.
            if not await self._applied_before(alone.event):
                raise
            log.info("booking message applied before", booking_id=str(alone.event.booking_id))
            tally.applied_before()
            return
        self._after_commit()
        log.info("bookings settled", count=len(asked), released=len(releasing))

    async def _still_reserved(self, releases: list[Received]) -> list[tuple[Received, OrderState]]:
        """The releases whose confirmed orders still hold their seats, with those orders; a
        release of an order released before is left out. Raises ImpossibleRelease."""
        if not releases:
            return []
        orders = await self._records.orders([item.event.booking_id for item in releases])
        still: list[tuple[Received, OrderState]] = []
        for item in releases:
            state = orders.get(item.event.booking_id)
            with _logged(item.event.booking_id):
                if to_release(state, item.event):
                    assert state is not None
                    still.append((item, state))
        return still

    async def _reserve(self, asked: list[Received]) -> list[ReservationItemResult]:
        return await self._inventory.reserve_many(
            [reservation_item(item.event, item.correlation_id) for item in asked]
        )

    async def _release(
        self, releasing: list[tuple[Received, OrderState]]
    ) -> list[ReleaseItemResult]:
        """Inventory's answers to the releases, each checked against its order."""
        answers = await self._inventory.release_many(
            [release_item(item.event, state, item.correlation_id) for item, state in releasing]
        )
        for (_, state), answer in zip(releasing, answers, strict=True):
            with _logged(state.booking_id):
                check_released(state, answer)
        return answers

    async def _applied_before(self, event: BookingEvent) -> bool:
        """Whether the event a message asks for is in its booking's stream."""
        if isinstance(event, BookingRequested):
            return await self._records.has_verdict(event.booking_id)
        state = (await self._records.orders([event.booking_id])).get(event.booking_id)
        return state is not None and state.status is OrderStatus.RELEASED


@contextlib.contextmanager
def _logged(booking_id: uuid.UUID) -> Iterator[None]:
    """Log an :class:`ImpossibleRelease` of ``booking_id`` as it goes by: its message is never
    acknowledged, so an operator must hear of it."""
    try:
        yield
    except ImpossibleRelease as error:
        log.error(
            "impossible release, never acknowledged", booking_id=str(booking_id), error=str(error)
        )
        raise


def reservation_item(event: BookingRequested, correlation_id: str | None) -> ReservationItem:
    """The reservation a BookingRequested asks for, for its customer (whose per-event limit
    inventory keeps), naming the message as its cause."""
    return ReservationItem(
        event.event_id,
        event.booking_id,
        event.ticket_count,
        causation_id=str(event.message_id),
        correlation_id=correlation_id,
        customer_id=event.customer_id,
    )


def release_item(event: SeatRelease, order: OrderState, correlation_id: str | None) -> ReleaseItem:
    """The release of ``order``'s seats that ``event`` asks for, naming the message as its
    cause."""
    return ReleaseItem(
        event_id=order.event_id,
        booking_id=order.booking_id,
        reason=release_reason(event),
        causation_id=str(event.message_id),
        correlation_id=correlation_id,
    )
