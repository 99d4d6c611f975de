"""Inventory's service layer: each use case is one transaction on the inventory database."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.contracts.inventory import (
    Event,
    EventCreate,
    EventPage,
    ReservationRequest,
    ReservationResult,
    ReservationStatus,
    Venue,
    VenueCreate,
)
from ticketing.inventory import repository as repo
from ticketing.inventory.domain import Reservation, check_event_capacity, parse_price
from ticketing.shared.db import mysql_error_code, run_transaction
from ticketing.shared.errors import NotFound
from ticketing.shared.ids import new_id
from ticketing.shared.pagination import decode_cursor, page

DUPLICATE_KEY = 1062
MAX_PAGE_SIZE = 100


class InventoryService:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_venue(self, data: VenueCreate) -> Venue:
        venue = Venue(
            id=new_id(), name=data.name, address=data.address, total_capacity=data.total_capacity
        )

        async def work(conn: AsyncConnection) -> None:
            await repo.add_venue(conn, venue)

        await run_transaction(self._engine, work)
        return venue

    async def get_venue(self, venue_id: uuid.UUID) -> Venue:
        async with self._engine.connect() as conn:
            venue = await repo.get_venue(conn, venue_id)
        if venue is None:
            raise NotFound(f"venue {venue_id} does not exist")
        return venue

    async def create_event(self, data: EventCreate) -> Event:
        price = parse_price(data.ticket_price)
        event_id = new_id()

        async def work(conn: AsyncConnection) -> Event:
            venue = await repo.get_venue(conn, data.venue_id)
            if venue is None:
                raise NotFound(f"venue {data.venue_id} does not exist")
            check_event_capacity(data.total_capacity, venue.total_capacity)
            await repo.add_event(
                conn,
                event_id=event_id,
                name=data.name,
                venue_id=venue.id,
                total_capacity=data.total_capacity,
                ticket_price=price,
                starts_at=data.starts_at,
            )
            event = await repo.get_event(conn, event_id)
            assert event is not None
            return event

        return await run_transaction(self._engine, work)

    async def get_event(self, event_id: uuid.UUID) -> Event:
        async with self._engine.connect() as conn:
            event = await repo.get_event(conn, event_id)
        if event is None:
            raise NotFound(f"event {event_id} does not exist")
        return event

    async def list_events(self, *, limit: int, cursor: str | None) -> EventPage:
        after = None if cursor is None else decode_cursor(cursor)
        async with self._engine.connect() as conn:
            items = await repo.list_events(conn, limit=limit + 1, after=after)
        return EventPage(*page(items, limit))

    async def reserve(self, event_id: uuid.UUID, request: ReservationRequest) -> ReservationResult:
        """Reserve seats for a booking, at most once per booking id.

        The reservation row is claimed first (its primary key serialises repeats of one booking
        without touching the event row), then one conditional UPDATE decides. A repeat gets the
        first answer back and never touches capacity again.
        """
        booking_id, count = request.booking_id, request.ticket_count

        async def work(conn: AsyncConnection) -> Reservation:
            await repo.claim_reservation(conn, booking_id, event_id, count)
            taken = await repo.take_capacity(conn, event_id, count)
            left = await repo.left_capacity(conn, event_id)
            if left is None:
                raise NotFound(f"event {event_id} does not exist")
            status = ReservationStatus.RESERVED if taken else ReservationStatus.INSUFFICIENT
            await repo.settle_reservation(conn, booking_id, status, left)
            return Reservation(booking_id, event_id, count, status, left)

        try:
            reservation = await run_transaction(self._engine, work)
        except IntegrityError as error:
            if mysql_error_code(error) != DUPLICATE_KEY:
                raise
            reservation = await self._first_answer(booking_id)
            reservation.check_repeat(event_id, count)
        return ReservationResult(
            booking_id=reservation.booking_id,
            status=reservation.status,
            left_capacity=reservation.left_capacity,
        )

    async def _first_answer(self, booking_id: uuid.UUID) -> Reservation:
        async with self._engine.connect() as conn:
            reservation = await repo.get_reservation(conn, booking_id)
        if reservation is None:  # pragma: no cover - the duplicate key proves it exists
            raise NotFound(f"no reservation for booking {booking_id}")
        return reservation
