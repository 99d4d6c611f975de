"""Booking's view of inventory: read an event (price, tickets left) over REST."""

from __future__ import annotations

import uuid

import msgspec

from ticketing.contracts.inventory import Event
from ticketing.shared.errors import NotFound, Unavailable
from ticketing.shared.upstream import Upstream


class InventoryClient:
    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    async def get_event(
        self,
        event_id: uuid.UUID,
        *,
        correlation_id: str | None = None,
        authorization: str | None = None,
    ) -> Event:
        headers = {}
        if correlation_id:
            headers["X-Request-ID"] = correlation_id
        if authorization:
            headers["Authorization"] = authorization
        response = await self._upstream.request(
            "GET", f"/api/v1/events/{event_id}", headers=headers
        )
        if response.status_code == 404:
            raise NotFound(f"event {event_id} does not exist")
        if response.status_code != 200:
            raise Unavailable(f"inventory answered {response.status_code} for event {event_id}")
        return msgspec.json.decode(response.content, type=Event)
