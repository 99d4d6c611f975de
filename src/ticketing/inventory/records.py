"""Inventory's write records in its database: the SQL adapter of the port the service's write
use cases talk to (:class:`ticketing.inventory.ports.InventoryRecords`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.inventory import holdings
from ticketing.inventory import repository as repo
from ticketing.inventory.decisions import Decisions, Releases, counted
from ticketing.inventory.domain import EventScheduled, VenueRegistered, VenueState
from ticketing.inventory.ports import ReleaseSeats, ReserveSeats
from ticketing.shared.db.engine import is_duplicate_key
from ticketing.shared.db.unit_of_work import AlreadyRecorded, UnitOfWork, in_unit_of_work
from ticketing.shared.store.eventstore import Cause

T = TypeVar("T")


class SqlInventoryRecords:
    """Each call is one unit of work: its reads, then its events, projection rows and
    reservations sent with the ``COMMIT``. A broken unique key is :class:`AlreadyRecorded`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def register_venue(self, registered: VenueRegistered, cause: Cause) -> None:
        async def work(uow: UnitOfWork) -> None:
            repo.register_venue(uow, registered, cause)

        await self._unit(work)

    async def schedule_event(
        self, venue_id: uuid.UUID, decide: Callable[[VenueState], EventScheduled], cause: Cause
    ) -> tuple[VenueState, EventScheduled] | None:
        async def work(uow: UnitOfWork) -> tuple[VenueState, EventScheduled] | None:
            venue = await repo.get_venue_state(uow.conn, venue_id)
            if venue is None:
                return None
            scheduled = decide(venue)
            repo.schedule_event(uow, scheduled, cause)
            return venue, scheduled

        return await self._unit(work)

    async def reserve(self, batch: ReserveSeats) -> Decisions:
        async def work(uow: UnitOfWork) -> Decisions:
            # The locks first, then the reservations already recorded: a repeat committed
            # while this waited for a lock is then seen, not found later on the primary key.
            # The seats held are counted under the same locks, and only at events with a limit.
            states = await holdings.lock_states(uow.conn, batch.event_ids)
            reread = batch.existing_of
            existing = await holdings.get_reservations(uow.conn, reread) if reread else {}
            pairs = counted(batch.customers, states)
            held = await holdings.held_seats(uow.conn, pairs) if pairs else {}
            decisions = batch.decide(states, existing, held)
            uow.write(
                *holdings.reservation_statements(
                    decisions.events,
                    list(decisions.states.values()),
                    decisions.new,
                    batch.cause,
                    batch.causes,
                )
            )
            return decisions

        return await self._unit(work)

    async def release(self, batch: ReleaseSeats) -> Releases:
        async def work(uow: UnitOfWork) -> Releases:
            # The same locks as a reservation's, then the reservations: a reservation or a
            # release of one of these events can neither commit nor be under way meanwhile.
            states = await holdings.lock_states(uow.conn, batch.event_ids)
            existing = await holdings.get_reservations(uow.conn, batch.booking_ids)
            releases = batch.decide(states, existing)
            uow.write(
                *holdings.release_statements(
                    releases.events,
                    list(releases.states.values()),
                    releases.released,
                    batch.cause,
                    batch.causes,
                )
            )
            return releases

        return await self._unit(work)

    async def _unit(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        try:
            return await in_unit_of_work(self._engine, work)
        except IntegrityError as error:
            if is_duplicate_key(error):
                raise AlreadyRecorded(str(error.orig)) from error
            raise
