"""The order saga's view of inventory: the idempotent reservation call."""

from __future__ import annotations

import uuid

import msgspec

from ticketing.contracts.inventory import (
    MAX_RESERVATION_BATCH,
    ReservationBatch,
    ReservationBatchResult,
    ReservationItem,
    ReservationItemResult,
    ReservationRequest,
    ReservationResult,
)
from ticketing.shared.errors import Conflict, NotFound
from ticketing.shared.upstream import Upstream

_encoder = msgspec.json.Encoder()


class InventoryRefused(Exception):
    """Inventory rejected the request as malformed: retrying will not help."""


class InventoryClient:
    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    async def reserve(
        self,
        event_id: uuid.UUID,
        booking_id: uuid.UUID,
        ticket_count: int,
        *,
        correlation_id: str | None = None,
    ) -> ReservationResult:
        """Reserve seats once per booking id (a repeat returns the first answer).

        Raises NotFound for an unknown event, Conflict when the booking id already reserved
        other seats, Unavailable when inventory cannot answer now.
        """
        body = _encoder.encode(ReservationRequest(booking_id=booking_id, ticket_count=ticket_count))
        headers = {"Content-Type": "application/json"}
        if correlation_id:
            headers["X-Request-ID"] = correlation_id
        response = await self._upstream.request(
            "POST", f"/internal/v1/events/{event_id}/reservations", content=body, headers=headers
        )
        if response.status_code == 200:
            return msgspec.json.decode(response.content, type=ReservationResult)
        if response.status_code == 404:
            raise NotFound(f"event {event_id} does not exist")
        if response.status_code == 409:
            raise Conflict(f"booking {booking_id} holds a different reservation")
        raise InventoryRefused(f"inventory answered {response.status_code}: {response.text[:300]}")

    async def reserve_many(self, items: list[ReservationItem]) -> list[ReservationItemResult]:
        """Reserve for many bookings (each at most once per booking id), in calls of at most
        ``MAX_RESERVATION_BATCH``; the answers in the order of ``items``. Raises Unavailable
        when inventory cannot answer."""
        answers: list[ReservationItemResult] = []
        for start in range(0, len(items), MAX_RESERVATION_BATCH):
            answers += await self._reserve_batch(items[start : start + MAX_RESERVATION_BATCH])
        return answers

    async def _reserve_batch(self, items: list[ReservationItem]) -> list[ReservationItemResult]:
        response = await self._upstream.request(
            "POST",
            "/internal/v1/reservations",
            content=_encoder.encode(ReservationBatch(items=items)),
            headers={"Content-Type": "application/json"},
        )
        if response.status_code != 200:
            raise InventoryRefused(
                f"inventory answered {response.status_code}: {response.text[:300]}"
            )
        result = msgspec.json.decode(response.content, type=ReservationBatchResult)
        if [r.booking_id for r in result.items] != [i.booking_id for i in items]:
            raise InventoryRefused("inventory answered for other bookings than were asked")
        return result.items
