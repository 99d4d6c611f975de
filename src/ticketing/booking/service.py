"""Booking's service layer, as its entrypoints see it: customers and the reads here, and each
write use case in its own module (a request in :mod:`~ticketing.booking.requests`, the saga's
answers in :mod:`~ticketing.booking.settlement`, a confirm, a cancel and the expiry of holds in
:mod:`~ticketing.booking.transitions`). Every change is an event in booking's store with its
projection (ADR 12), recorded through the ports."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ticketing.booking import domain
from ticketing.booking.lifecycle import Caller
from ticketing.booking.ports import BookingRecords, CommitObserver, EventLookup, NoCommitObserver
from ticketing.booking.requests import BookingRequests
from ticketing.booking.settlement import SagaSettlement
from ticketing.booking.transitions import BookingTransitions
from ticketing.contracts.booking import (
    Booking,
    BookingHistoryPage,
    BookingPage,
    Customer,
    CustomerCreate,
)
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.errors import Conflict, NotFound
from ticketing.shared.http.pagination import decode_cursor, page
from ticketing.shared.ids import new_id
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause, unbroken


class BookingService:
    """The one object booking's entrypoints are given: it answers the reads and customers, and
    hands each write to its use case, except requests: the busiest endpoint (and the purge of
    their keys) call :attr:`requests` itself, with no hop through here."""

    def __init__(
        self,
        records: BookingRecords,
        inventory: EventLookup,
        *,
        max_tickets: int,
        abandoned_after: timedelta = timedelta(seconds=30),
        hold_for: timedelta = timedelta(seconds=900),
        observer: CommitObserver | None = None,
    ) -> None:
        self._records = records
        observer = observer or NoCommitObserver()
        self.requests: Final = BookingRequests(
            records, inventory, max_tickets=max_tickets, abandoned_after=abandoned_after
        )
        self._settlement = SagaSettlement(records, observer, hold_for=hold_for)
        self._transitions = BookingTransitions(records, observer)

    # Customers -------------------------------------------------------------------------

    async def create_customer(self, data: CustomerCreate, cause: Cause) -> Customer:
        registered = domain.CustomerRegistered(
            customer_id=new_id(),
            name=data.name,
            email=data.email,
            address=data.address,
            registered_at=datetime.now(UTC),
        )
        try:
            return await self._records.register_customer(registered, cause)
        except AlreadyRecorded:
            raise Conflict(f"a customer with email {data.email} already exists") from None

    async def get_customer(self, customer_id: uuid.UUID) -> Customer:
        customer = await self._records.get_customer(customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} does not exist")
        return customer

    async def list_bookings(
        self, customer_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> BookingPage:
        after = None if cursor is None else decode_cursor(cursor)
        if not await self._records.customer_exists(customer_id):
            raise NotFound(f"customer {customer_id} does not exist")
        items = await self._records.list_bookings(customer_id, limit=limit + 1, after=after)
        return BookingPage(*page(items, limit))

    # Reads -----------------------------------------------------------------------------

    async def get_booking(self, booking_id: uuid.UUID, *, as_of: datetime | None = None) -> Booking:
        """The booking as it is now (its projection row), or as it was at ``as_of`` (aware)."""
        if as_of is None:
            booking = await self._records.get_booking(booking_id)
        else:
            recorded = unbroken(await self._records.stream(booking_id, until=as_of))
            # The id of another stream (a customer's) names no booking at any time.
            booking = _booking_of(
                [r.event for r in recorded if r.stream_type == domain.BOOKING_STREAM]
            )
            if booking is None:
                raise NotFound(f"booking {booking_id} did not exist at {as_of.isoformat()}")
        if booking is None:
            raise NotFound(f"booking {booking_id} does not exist")
        return booking

    async def booking_history(
        self, booking_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> BookingHistoryPage:
        """The events of the booking's stream, oldest first, a page at a time."""
        if await self._records.get_booking(booking_id) is None:
            raise NotFound(f"booking {booking_id} does not exist")
        items, next_cursor = await self._records.history(booking_id, limit=limit, cursor=cursor)
        return BookingHistoryPage(items=items, next_cursor=next_cursor)

    # Writes, each in its use case's module ---------------------------------------------

    async def apply_saga_answers(self, received: Sequence[Received]) -> None:
        """See :meth:`~ticketing.booking.settlement.SagaSettlement.apply_saga_answers`."""
        await self._settlement.apply_saga_answers(received)

    async def confirm(self, booking_id: uuid.UUID, caller: Caller, cause: Cause) -> Booking:
        """See :meth:`~ticketing.booking.transitions.BookingTransitions.confirm`."""
        return await self._transitions.confirm(booking_id, caller, cause)

    async def cancel(self, booking_id: uuid.UUID, caller: Caller, cause: Cause) -> Booking:
        """See :meth:`~ticketing.booking.transitions.BookingTransitions.cancel`."""
        return await self._transitions.cancel(booking_id, caller, cause)

    async def expire_holds(self) -> int:
        """See :meth:`~ticketing.booking.transitions.BookingTransitions.expire_holds`."""
        return await self._transitions.expire_holds()


def _booking_of(events: Sequence[Any]) -> Booking | None:
    """The booking folded from the events of its stream, None before the first."""
    return domain.fold(events).booking if events else None
