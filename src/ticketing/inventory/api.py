"""Inventory's HTTP entrypoints: translate requests, delegate to the service layer."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from ticketing.contracts.inventory import (
    Event,
    EventCreate,
    EventHistoryPage,
    EventPage,
    ReleaseBatch,
    ReleaseBatchResult,
    ReservationBatch,
    ReservationBatchResult,
    ReservationRequest,
    ReservationResult,
    Venue,
    VenueCreate,
)
from ticketing.inventory.service import MAX_PAGE_SIZE, InventoryService
from ticketing.shared.app import from_app_state
from ticketing.shared.auth.middleware import cause_of, requires
from ticketing.shared.http.history import AS_OF, parse_as_of
from ticketing.shared.http.pagination import CURSOR_PATTERN, VERSION_CURSOR_PATTERN

WRITE = "inventory:write"
RESERVE = "inventory:reserve"


Inventory = NamedDependency[InventoryService]
DEPENDENCIES = {"inventory": from_app_state("inventory")}


class VenueController(Controller):
    path = "/api/v1/venues"
    tags = ["venues"]
    dependencies = DEPENDENCIES

    @post("/", status_code=201, summary="Create a venue", opt=requires(WRITE))
    async def create_venue(
        self, request: Request[Any, Any, Any], data: JSONBody[VenueCreate], inventory: Inventory
    ) -> Response[Venue]:
        venue = await inventory.create_venue(data, cause_of(request.scope))
        return Response(venue, status_code=201, headers={"Location": f"{self.path}/{venue.id}"})

    @get("/{venue_id:uuid}", summary="Get a venue")
    async def get_venue(self, venue_id: FromPath[uuid.UUID], inventory: Inventory) -> Venue:
        return await inventory.get_venue(venue_id)


class EventController(Controller):
    path = "/api/v1/events"
    tags = ["events"]
    dependencies = DEPENDENCIES

    @post("/", status_code=201, summary="Create an event at a venue", opt=requires(WRITE))
    async def create_event(
        self, request: Request[Any, Any, Any], data: JSONBody[EventCreate], inventory: Inventory
    ) -> Response[Event]:
        event = await inventory.create_event(data, cause_of(request.scope))
        return Response(event, status_code=201, headers={"Location": f"{self.path}/{event.id}"})

    @get("/", summary="List events, oldest first, a page at a time")
    async def list_events(
        self,
        inventory: Inventory,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = 20,
        cursor: Annotated[str | None, QueryParameter(pattern=CURSOR_PATTERN)] = None,
    ) -> EventPage:
        return await inventory.list_events(limit=limit, cursor=cursor)

    @get("/{event_id:uuid}", summary="Get an event with its venue and the tickets left")
    async def get_event(
        self,
        event_id: FromPath[uuid.UUID],
        inventory: Inventory,
        as_of: Annotated[str | None, AS_OF] = None,
    ) -> Event:
        when = None if as_of is None else parse_as_of(as_of)
        return await inventory.get_event(event_id, as_of=when)

    @get(
        "/{event_id:uuid}/history",
        summary="List what happened to an event, oldest first, a page at a time",
    )
    async def event_history(
        self,
        event_id: FromPath[uuid.UUID],
        inventory: Inventory,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = 20,
        cursor: Annotated[str | None, QueryParameter(pattern=VERSION_CURSOR_PATTERN)] = None,
    ) -> EventHistoryPage:
        return await inventory.event_history(event_id, limit=limit, cursor=cursor)


class ReservationController(Controller):
    """Internal: called by the order saga, never routed by the gateway."""

    path = "/internal/v1/events"
    tags = ["internal"]
    dependencies = DEPENDENCIES

    @post(
        "/{event_id:uuid}/reservations",
        status_code=200,
        summary="Reserve tickets for a booking (idempotent per booking id)",
        opt=requires(RESERVE),
    )
    async def reserve(
        self,
        request: Request[Any, Any, Any],
        event_id: FromPath[uuid.UUID],
        data: JSONBody[ReservationRequest],
        inventory: Inventory,
    ) -> ReservationResult:
        return await inventory.reserve(event_id, data, cause_of(request.scope))


class ReservationBatchController(Controller):
    """Internal: the order saga reserves for a whole batch of bookings in one call."""

    path = "/internal/v1/reservations"
    tags = ["internal"]
    dependencies = DEPENDENCIES

    @post(
        "/",
        status_code=200,
        summary="Reserve tickets for many bookings in one transaction (idempotent per booking id)",
        description="Items are decided in order, exactly as if each were reserved alone: a "
        "booking id that already holds a reservation gets its first answer back (or "
        "`conflict` when it asks for other seats); an unknown event records nothing; an item "
        "whose `customer_id` would then hold more than the event's `max_tickets_per_customer` "
        "(counting seats reserved and not released) is refused `over_limit`.",
        opt=requires(RESERVE),
    )
    async def reserve_many(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ReservationBatch],
        inventory: Inventory,
    ) -> ReservationBatchResult:
        items = await inventory.reserve_many(data.items, cause_of(request.scope))
        return ReservationBatchResult(items=items)


class ReleaseBatchController(Controller):
    """Internal: the order saga gives back the seats of cancelled or expired bookings."""

    path = "/internal/v1/releases"
    tags = ["internal"]
    dependencies = DEPENDENCIES

    @post(
        "/",
        status_code=200,
        summary="Give bookings' reserved seats back, in one transaction (idempotent per "
        "booking id)",
        description="Items are decided in order. A booking id holding reserved seats at the "
        "item's event gets them back (`released`, with the seats and the seats left after); "
        "a repeat answers as the first release did and changes nothing; a booking id with no "
        "reservation there, or a refused one, is `not_reserved`.",
        opt=requires(RESERVE),
    )
    async def release_many(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ReleaseBatch],
        inventory: Inventory,
    ) -> ReleaseBatchResult:
        items = await inventory.release_many(data.items, cause_of(request.scope))
        return ReleaseBatchResult(items=items)
