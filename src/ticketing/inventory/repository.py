"""Inventory's database adapter: the event store, and the venues and events it projects,
SQLAlchemy Core statements on one connection (the reservation path's are
:mod:`ticketing.inventory.holdings`)."""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any, TypeAlias

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.contracts.inventory import Event, Venue
from ticketing.inventory.domain import (
    EVENT_STREAM,
    EVENT_TYPES,
    UPCASTERS,
    VENUE_STREAM,
    EventScheduled,
    EventState,
    VenueRegistered,
    VenueState,
    evolve,
)
from ticketing.inventory.rules import format_price
from ticketing.inventory.tables import event_store, events, venues
from ticketing.shared.clock import naive_utc, utcnow
from ticketing.shared.db import sql
from ticketing.shared.db.unit_of_work import UnitOfWork
from ticketing.shared.store.codec import EventCodec
from ticketing.shared.store.eventstore import Cause, EventStore, Pending

STORE = EventStore(event_store, EventCodec(EVENT_TYPES, UPCASTERS))

AnyRow: TypeAlias = Row[*tuple[Any, ...]]


def _venue(row: AnyRow) -> Venue:
    return Venue(id=row.id, name=row.name, address=row.address, total_capacity=row.total_capacity)


_EVENT_COLUMNS = (
    events.c.id,
    events.c.name,
    events.c.total_capacity,
    events.c.left_capacity,
    events.c.ticket_price,
    events.c.starts_at,
    events.c.max_tickets_per_customer,
    venues.c.id.label("venue_id"),
    venues.c.name.label("venue_name"),
    venues.c.address.label("venue_address"),
    venues.c.total_capacity.label("venue_total_capacity"),
)


def _event(row: AnyRow) -> Event:
    return Event(
        id=row.id,
        name=row.name,
        venue=Venue(
            id=row.venue_id,
            name=row.venue_name,
            address=row.venue_address,
            total_capacity=row.venue_total_capacity,
        ),
        total_capacity=row.total_capacity,
        left_capacity=row.left_capacity,
        ticket_price=format_price(row.ticket_price),
        starts_at=None if row.starts_at is None else row.starts_at.replace(tzinfo=UTC),
        max_tickets_per_customer=row.max_tickets_per_customer,
    )


def venue_row(state: VenueState) -> dict[str, Any]:
    """The projection row of a venue's state (but for ``created_at``)."""
    return {
        "id": state.id,
        "name": state.name,
        "address": state.address,
        "total_capacity": state.total_capacity,
        "version": state.version,
    }


def venue_state(row: AnyRow) -> VenueState:
    return VenueState(row.id, row.name, row.address, row.total_capacity, row.version)


def event_row(state: EventState) -> dict[str, Any]:
    """The projection row of an event's state (but for ``created_at``): times in naive UTC."""
    return {
        "id": state.id,
        "venue_id": state.venue_id,
        "name": state.name,
        "total_capacity": state.total_capacity,
        "left_capacity": state.left_capacity,
        "ticket_price": state.ticket_price,
        "starts_at": None if state.starts_at is None else naive_utc(state.starts_at),
        "version": state.version,
        "max_tickets_per_customer": state.max_tickets_per_customer,
    }


def event_state(row: AnyRow) -> EventState:
    """An event's state from its projection row (``starts_at`` in UTC)."""
    return EventState(
        id=row.id,
        venue_id=row.venue_id,
        name=row.name,
        total_capacity=row.total_capacity,
        left_capacity=row.left_capacity,
        ticket_price=row.ticket_price,
        starts_at=None if row.starts_at is None else row.starts_at.replace(tzinfo=UTC),
        version=row.version,
        max_tickets_per_customer=row.max_tickets_per_customer,
    )


def register_venue(uow: UnitOfWork, event: VenueRegistered, cause: Cause) -> Venue:
    """Record ``event`` and its projection row; the venue as it will be."""
    state = evolve(None, event)
    assert isinstance(state, VenueState)
    now = utcnow()
    uow.write(
        STORE.append([Pending(state.id, VENUE_STREAM, 1, event)], cause, now),
        sql.insert_row(venues, {**venue_row(state), "created_at": now}),
    )
    return venue_of(state)


async def get_venue(conn: AsyncConnection, venue_id: uuid.UUID) -> Venue | None:
    row = (await conn.execute(select(venues).where(venues.c.id == venue_id))).first()
    return None if row is None else _venue(row)


async def get_venue_state(conn: AsyncConnection, venue_id: uuid.UUID) -> VenueState | None:
    row = (await conn.execute(select(venues).where(venues.c.id == venue_id))).first()
    return None if row is None else venue_state(row)


def schedule_event(uow: UnitOfWork, event: EventScheduled, cause: Cause) -> EventState:
    """Record ``event`` and its projection row; the event's state as it will be."""
    state = evolve(None, event)
    assert isinstance(state, EventState)
    now = utcnow()
    uow.write(
        STORE.append([Pending(state.id, EVENT_STREAM, 1, event)], cause, now),
        sql.insert_row(events, {**event_row(state), "created_at": now}),
    )
    return state


async def get_event(conn: AsyncConnection, event_id: uuid.UUID) -> Event | None:
    query = select(*_EVENT_COLUMNS).join_from(events, venues).where(events.c.id == event_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _event(row)


async def list_events(conn: AsyncConnection, *, limit: int, after: uuid.UUID | None) -> list[Event]:
    """Events in id order (creation order, ids are UUIDv7), starting after ``after``."""
    query = select(*_EVENT_COLUMNS).join_from(events, venues).order_by(events.c.id).limit(limit)
    if after is not None:
        query = query.where(events.c.id > after)
    return [_event(row) for row in await conn.execute(query)]


async def event_exists(conn: AsyncConnection, event_id: uuid.UUID) -> bool:
    return (await conn.scalar(select(events.c.id).where(events.c.id == event_id))) is not None


def venue_of(state: VenueState) -> Venue:
    return Venue(
        id=state.id, name=state.name, address=state.address, total_capacity=state.total_capacity
    )


def event_of(state: EventState, venue: Venue) -> Event:
    """An event's state (folded from its stream) in the shape its projection row is served in."""
    starts_at = state.starts_at
    return Event(
        id=state.id,
        name=state.name,
        venue=venue,
        total_capacity=state.total_capacity,
        left_capacity=state.left_capacity,
        ticket_price=format_price(state.ticket_price),
        # Stored with the offset it was sent with; the projection serves it in UTC.
        starts_at=None if starts_at is None else starts_at.astimezone(UTC),
        max_tickets_per_customer=state.max_tickets_per_customer,
    )
