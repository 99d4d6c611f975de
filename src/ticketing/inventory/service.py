"""Inventory's service layer: each write use case is one unit of work of its records (the
port :class:`~ticketing.inventory.ports.InventoryRecords`, whose SQL adapter is
:class:`ticketing.inventory.records.SqlInventoryRecords`); the reads query the database."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.contracts.inventory import (
    Event,
    EventCreate,
    EventHistoryPage,
    EventPage,
    ReleaseItem,
    ReleaseItemResult,
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
    ReservationRequest,
    ReservationResult,
    ReservationStatus,
    Venue,
    VenueCreate,
)
from ticketing.inventory import repository as repo
from ticketing.inventory.decisions import (
    CustomerSeats,
    Decisions,
    Releases,
    customers_of,
    decide,
    decide_release,
)
from ticketing.inventory.domain import (
    EventScheduled,
    EventState,
    VenueState,
    decide_register_venue,
    decide_schedule_event,
    evolve,
    fold,
)
from ticketing.inventory.ports import InventoryRecords, ReleaseSeats, ReserveSeats
from ticketing.inventory.reservation import Reservation
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.errors import Conflict, NotFound
from ticketing.shared.http.history import history_page
from ticketing.shared.http.pagination import (
    decode_cursor,
    page,
)
from ticketing.shared.ids import new_id
from ticketing.shared.store.eventstore import Cause, unbroken

DUPLICATE_RETRIES = 3
MAX_PAGE_SIZE = 100


def item_causes(
    items: Sequence[ReservationItem | ReleaseItem], cause: Cause
) -> dict[uuid.UUID, Cause]:
    """The cause of each booking id whose first item (the one decided) names its own."""
    causes: dict[uuid.UUID, Cause] = {}
    seen: set[uuid.UUID] = set()
    for item in items:
        if item.booking_id in seen:
            continue
        seen.add(item.booking_id)
        if item.causation_id or item.correlation_id:
            causes[item.booking_id] = cause.caused_by(item.causation_id, item.correlation_id)
    return causes


class InventoryService:
    """Inventory's use cases: the writes through ``records``, the reads on ``engine`` (a
    service built without one, as in the unit tests, only writes)."""

    def __init__(self, records: InventoryRecords, engine: AsyncEngine | None = None) -> None:
        self._records = records
        self._database = engine

    @property
    def _engine(self) -> AsyncEngine:
        if self._database is None:
            raise RuntimeError("this inventory service has no database to read from")
        return self._database

    async def create_venue(self, data: VenueCreate, cause: Cause) -> Venue:
        registered = decide_register_venue(new_id(), data.name, data.address, data.total_capacity)
        await self._records.register_venue(registered, cause)
        state = evolve(None, registered)
        assert isinstance(state, VenueState)
        return repo.venue_of(state)

    async def get_venue(self, venue_id: uuid.UUID) -> Venue:
        async with self._engine.connect() as conn:
            venue = await repo.get_venue(conn, venue_id)
        if venue is None:
            raise NotFound(f"venue {venue_id} does not exist")
        return venue

    async def create_event(self, data: EventCreate, cause: Cause) -> Event:
        event_id = new_id()

        def schedule(venue: VenueState) -> EventScheduled:
            return decide_schedule_event(
                event_id,
                venue,
                name=data.name,
                total_capacity=data.total_capacity,
                ticket_price=data.ticket_price,
                starts_at=data.starts_at,
                max_tickets_per_customer=data.max_tickets_per_customer,
            )

        recorded = await self._records.schedule_event(data.venue_id, schedule, cause)
        if recorded is None:
            raise NotFound(f"venue {data.venue_id} does not exist")
        venue, scheduled = recorded
        state = evolve(None, scheduled)
        assert isinstance(state, EventState)
        return repo.event_of(state, repo.venue_of(venue))

    async def get_event(self, event_id: uuid.UUID, *, as_of: datetime | None = None) -> Event:
        """The event as it is now (its projection row), or as it was at ``as_of`` (aware)."""
        if as_of is not None:
            return await self._event_as_of(event_id, as_of)
        async with self._engine.connect() as conn:
            event = await repo.get_event(conn, event_id)
        if event is None:
            raise NotFound(f"event {event_id} does not exist")
        return event

    async def _event_as_of(self, event_id: uuid.UUID, as_of: datetime) -> Event:
        """The event's stream folded up to ``as_of``. Its venue is read from the projection:
        a venue's stream holds only its registration, so the venue now is the venue at every
        time the event existed."""
        async with self._engine.connect() as conn:
            recorded = unbroken(await repo.STORE.stream(conn, event_id, until=as_of))
            state = fold(r.event for r in recorded)
            if not isinstance(state, EventState):  # nothing yet, or the id of another stream
                raise NotFound(f"event {event_id} did not exist at {as_of.isoformat()}")
            venue = await repo.get_venue(conn, state.venue_id)
        assert venue is not None, "an event is scheduled only at a registered venue"
        return repo.event_of(state, venue)

    async def event_history(
        self, event_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> EventHistoryPage:
        """The events of the event's stream, oldest first, a page at a time."""
        async with self._engine.connect() as conn:
            if not await repo.event_exists(conn, event_id):
                raise NotFound(f"event {event_id} does not exist")
            items, next_cursor = await history_page(conn, repo.STORE, event_id, limit, cursor)
        return EventHistoryPage(items=items, next_cursor=next_cursor)

    async def list_events(self, *, limit: int, cursor: str | None) -> EventPage:
        after = None if cursor is None else decode_cursor(cursor)
        async with self._engine.connect() as conn:
            items = await repo.list_events(conn, limit=limit + 1, after=after)
        return EventPage(*page(items, limit))

    async def reserve(
        self, event_id: uuid.UUID, request: ReservationRequest, cause: Cause
    ) -> ReservationResult:
        """Reserve seats for one booking, at most once per booking id (a batch of one)."""
        item = ReservationItem(event_id, request.booking_id, request.ticket_count)
        (result,) = await self.reserve_many([item], cause)
        if result.outcome is ReservationOutcome.EVENT_NOT_FOUND:
            raise NotFound(f"event {event_id} does not exist")
        if result.outcome is ReservationOutcome.CONFLICT:
            raise Conflict(f"booking {request.booking_id} already holds a different reservation")
        if result.outcome is ReservationOutcome.OVER_LIMIT:  # a repeat: this call names nobody
            raise Conflict(f"booking {request.booking_id} was refused over its customer's limit")
        assert result.left_capacity is not None
        return ReservationResult(
            booking_id=result.booking_id,
            status=ReservationStatus(result.outcome.value),
            left_capacity=result.left_capacity,
        )

    async def reserve_many(
        self, items: Sequence[ReservationItem], cause: Cause
    ) -> list[ReservationItemResult]:
        """Decide reservations for many bookings in one transaction, at most once per booking id
        (the records lock the events' rows, and the decisions follow request order:
        :func:`~ticketing.inventory.decisions.decide`).

        The first attempt assumes that no booking id holds a reservation yet, the common case,
        to save a read; a repeat then fails the batch on the primary key (nothing is written)
        and the batch is decided again knowing the reservations recorded, as is one that met a
        stale stream version, up to ``DUPLICATE_RETRIES`` times.
        """

        def decide_batch(
            states: Mapping[uuid.UUID, EventState],
            existing: Mapping[uuid.UUID, Reservation],
            held: Mapping[CustomerSeats, int],
        ) -> Decisions:
            return decide(items, existing, states, held)

        batch = ReserveSeats(
            list({item.event_id for item in items}),
            decide_batch,
            cause,
            item_causes(items, cause),
            customers=customers_of(items),
        )
        for attempt in range(DUPLICATE_RETRIES + 1):
            try:
                decisions = await self._records.reserve(batch)
            except AlreadyRecorded:
                if attempt == DUPLICATE_RETRIES:
                    raise
                batch = replace(batch, existing_of=[item.booking_id for item in items])
                continue
            return decisions.results
        raise AssertionError("unreachable")

    async def release_many(
        self, items: Sequence[ReleaseItem], cause: Cause
    ) -> list[ReleaseItemResult]:
        """Give bookings' seats back in one transaction, at most once per booking id.

        The events' rows are locked as a reservation locks them, then the reservations are
        read and the releases decided in request order (see
        :func:`~ticketing.inventory.decisions.decide_release`): a repeat, or a release that
        another transaction committed first, answers as the first release did and changes
        nothing. A stale stream version (which the locks rule out) is decided again, up to
        ``DUPLICATE_RETRIES`` times.
        """

        def decide_batch(
            states: Mapping[uuid.UUID, EventState], existing: Mapping[uuid.UUID, Reservation]
        ) -> Releases:
            return decide_release(items, existing, states)

        batch = ReleaseSeats(
            list({item.event_id for item in items}),
            list({item.booking_id for item in items}),
            decide_batch,
            cause,
            item_causes(items, cause),
        )
        for attempt in range(DUPLICATE_RETRIES + 1):
            try:
                releases = await self._records.release(batch)
            except AlreadyRecorded:
                if attempt == DUPLICATE_RETRIES:
                    raise
                continue
            return releases.results
        raise AssertionError("unreachable")
