"""Inventory in memory: its records (the port its write use cases talk to), and the reservation
call other services make, answered by inventory's own service over those records."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ticketing.contracts.inventory import (
    ReleaseItem,
    ReleaseItemResult,
    ReservationItem,
    ReservationItemResult,
)
from ticketing.inventory.decisions import CustomerSeats, Decisions, Releases, counted
from ticketing.inventory.domain import (
    EVENT_STREAM,
    VENUE_STREAM,
    EventScheduled,
    EventState,
    InventoryEvent,
    ReservationRefused,
    SeatsReleased,
    SeatsReserved,
    VenueRegistered,
    VenueState,
    decide_register_venue,
    decide_schedule_event,
    evolve,
)
from ticketing.inventory.ports import ReleaseSeats, ReserveSeats
from ticketing.inventory.reservation import Reservation
from ticketing.inventory.service import InventoryService
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.errors import Unavailable
from ticketing.shared.store.eventstore import Cause


class CheckFailed(Exception):
    """A row the database's CHECK constraints refuse (an OperationalError there): a decision
    that takes seats that are not left."""


@dataclass(frozen=True)
class Recorded:
    """One event of a stream as the store keeps it: with its stream's type and its cause."""

    stream_type: str
    event: InventoryEvent
    cause: Cause


async def _nothing() -> None:
    return None


def _recorded(
    events: Sequence[tuple[int, SeatsReserved | ReservationRefused | SeatsReleased]],
    batch: ReserveSeats | ReleaseSeats,
) -> list[tuple[uuid.UUID, int, Recorded]]:
    """A batch's events as appended to their streams, each with its booking's cause in the
    batch or else the batch's."""
    return [
        (e.event_id, v, Recorded(EVENT_STREAM, e, batch.causes.get(e.booking_id) or batch.cause))
        for v, e in events
    ]


class InMemoryInventoryRecords:
    """Inventory's records: the streams (version -> event with its cause) and the projections,
    written all or nothing per call. The database's rules are kept: a stream version, a venue,
    an event and a booking id's reservation are each recorded once; an event is scheduled only
    at a venue; no event is left with fewer than no seats or more than it holds; a customer's
    seats held are counted only at events with a limit; a reservation is released at most once
    (in the database, the event's lock every release takes first makes sure of it)."""

    def __init__(self) -> None:
        self.streams: dict[uuid.UUID, dict[int, Recorded]] = {}
        self.venues: dict[uuid.UUID, VenueState] = {}
        self.events: dict[uuid.UUID, EventState] = {}
        self.reservations: dict[uuid.UUID, Reservation] = {}
        self.transactions = 0  # calls that recorded something
        self.existing_reads: list[list[uuid.UUID]] = []  # the booking ids each reserve read
        self.held_reads: list[list[CustomerSeats]] = []  # the seats held each reserve counted
        # Awaited by each reserve between its reads and its writes: what another transaction
        # commits meanwhile (in the database: before the locks are taken, or on other events).
        self.meanwhile: Callable[[], Awaitable[None]] = _nothing

    async def register_venue(self, registered: VenueRegistered, cause: Cause) -> None:
        self.record_venue(registered, cause)

    async def schedule_event(
        self, venue_id: uuid.UUID, decide: Callable[[VenueState], EventScheduled], cause: Cause
    ) -> tuple[VenueState, EventScheduled] | None:
        venue = self.venues.get(venue_id)
        if venue is None:
            return None
        scheduled = decide(venue)
        self.record_event(scheduled, cause)
        return venue, scheduled

    async def reserve(self, batch: ReserveSeats) -> Decisions:
        states = {i: self.events[i] for i in batch.event_ids if i in self.events}
        self.existing_reads.append(list(batch.existing_of))
        existing = {b: self.reservations[b] for b in batch.existing_of if b in self.reservations}
        pairs = counted(batch.customers, states)
        held = self.held(pairs) if pairs else {}
        if pairs:
            self.held_reads.append(pairs)
        decisions = batch.decide(states, existing, held)
        await self.meanwhile()
        appended = _recorded(decisions.events, batch)
        self._commit(appended, states=list(decisions.states.values()), reservations=decisions.new)
        return decisions

    async def release(self, batch: ReleaseSeats) -> Releases:
        states = {i: self.events[i] for i in batch.event_ids if i in self.events}
        existing = {b: self.reservations[b] for b in batch.booking_ids if b in self.reservations}
        releases = batch.decide(states, existing)
        await self.meanwhile()
        appended = _recorded(releases.events, batch)
        self._commit(appended, states=list(releases.states.values()), released=releases.released)
        return releases

    def held(self, pairs: Sequence[CustomerSeats]) -> dict[CustomerSeats, int]:
        """The seats each (event, customer) of ``pairs`` holds now; absent when none."""
        held: dict[CustomerSeats, int] = {}
        for r in self.reservations.values():
            key = (r.event_id, r.customer_id) if r.customer_id is not None else None
            if key in pairs and r.holds_seats:
                assert key is not None
                held[key] = held.get(key, 0) + r.ticket_count
        return held

    def record_venue(self, registered: VenueRegistered, cause: Cause) -> VenueState:
        state = evolve(None, registered)
        assert isinstance(state, VenueState)
        self._commit([(state.id, 1, Recorded(VENUE_STREAM, registered, cause))], venue=state)
        return state

    def record_event(self, scheduled: EventScheduled, cause: Cause) -> EventState:
        state = evolve(None, scheduled)
        assert isinstance(state, EventState)
        assert state.venue_id in self.venues, "the foreign key: an event is held at a venue"
        self._commit([(state.id, 1, Recorded(EVENT_STREAM, scheduled, cause))], states=[state])
        return state

    def given_event(self, capacity: int, limit: int | None = None) -> uuid.UUID:
        """A venue and an event of ``capacity`` seats there (at most ``limit`` per customer),
        recorded as the service does."""
        cause = Cause(actor="given")
        venue = self.record_venue(
            decide_register_venue(uuid.uuid4(), "Hall", "Road 1", capacity),
            cause,
        )
        scheduled = decide_schedule_event(
            uuid.uuid4(),
            venue,
            name="Show",
            total_capacity=capacity,
            ticket_price="10.00",
            starts_at=None,
            max_tickets_per_customer=limit,
        )
        return self.record_event(scheduled, cause).id

    def history(self, stream_id: uuid.UUID) -> list[Recorded]:
        """The stream's events in version order."""
        stream = self.streams.get(stream_id, {})
        return [stream[version] for version in sorted(stream)]

    def _commit(
        self,
        appended: Sequence[tuple[uuid.UUID, int, Recorded]],
        *,
        venue: VenueState | None = None,
        states: Sequence[EventState] = (),
        reservations: Sequence[Reservation] = (),
        released: Sequence[Reservation] = (),
    ) -> None:
        """Check every key and constraint first, then write everything (all or nothing)."""
        keys = [(stream_id, version) for stream_id, version, _ in appended]
        taken = [key for key in keys if key[1] in self.streams.get(key[0], {})]
        booked = [r.booking_id for r in reservations]
        if taken or len(set(keys)) < len(keys):
            raise AlreadyRecorded(f"stream versions taken: {taken or keys}")
        if set(booked) & set(self.reservations) or len(set(booked)) < len(booked):
            raise AlreadyRecorded(f"reservations taken: {booked}")
        for state in states:
            if not 0 <= state.left_capacity <= state.total_capacity:
                raise CheckFailed(f"event {state.id}: {state.left_capacity} seats left")
        for r in released:
            held = self.reservations.get(r.booking_id)
            assert held is not None, f"no reservation to release: {r}"
            assert held.holds_seats, f"released twice: {r}"
            if r.release is None:
                raise CheckFailed(f"reservation {r.booking_id} marked released with no release")
        if not appended:
            return
        for stream_id, version, recorded in appended:
            self.streams.setdefault(stream_id, {})[version] = recorded
        if venue is not None:
            self.venues[venue.id] = venue
        self.events.update((state.id, state) for state in states)
        self.reservations.update((r.booking_id, r) for r in reservations)
        self.reservations.update((r.booking_id, r) for r in released)
        self.transactions += 1


class InMemoryInventory:
    """Inventory's reservation call, answered by inventory's own service over records held
    here; ``down`` makes it answer as an unreachable inventory does."""

    def __init__(self) -> None:
        self.records = InMemoryInventoryRecords()
        self.service = InventoryService(self.records)
        self.calls: list[list[ReservationItem]] = []
        self.release_calls: list[list[ReleaseItem]] = []
        self.down = False

    @property
    def states(self) -> dict[uuid.UUID, EventState]:
        return self.records.events

    def schedule(self, capacity: int, limit: int | None = None) -> uuid.UUID:
        return self.records.given_event(capacity, limit)

    async def reserve_many(
        self, items: list[ReservationItem], *, correlation_id: str | None = None
    ) -> list[ReservationItemResult]:
        self.calls.append(list(items))
        if self.down:
            raise Unavailable("inventory is unreachable")
        # As the HTTP entrypoint names it: the calling client, its correlation id as cause.
        cause = Cause(actor="order", correlation_id=correlation_id, causation_id=correlation_id)
        return await self.service.reserve_many(items, cause)

    async def release_many(
        self, items: list[ReleaseItem], *, correlation_id: str | None = None
    ) -> list[ReleaseItemResult]:
        """Inventory's release call (``POST /internal/v1/releases``), as reserve_many."""
        self.release_calls.append(list(items))
        if self.down:
            raise Unavailable("inventory is unreachable")
        cause = Cause(actor="order", correlation_id=correlation_id, causation_id=correlation_id)
        return await self.service.release_many(items, cause)
