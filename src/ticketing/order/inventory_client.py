"""The order saga's view of inventory: the idempotent reservation call."""

from __future__ import annotations

import msgspec

from ticketing.contracts.inventory import (
    MAX_RESERVATION_BATCH,
    ReservationBatch,
    ReservationBatchResult,
    ReservationItem,
    ReservationItemResult,
)
from ticketing.shared.upstream import Upstream

_encoder = msgspec.json.Encoder()


class InventoryRefused(Exception):
    """Inventory rejected the request as malformed: retrying will not help."""


class InventoryClient:
    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    async def reserve_many(
        self, items: list[ReservationItem], *, correlation_id: str | None = None
    ) -> list[ReservationItemResult]:
        """Reserve for many bookings (each at most once per booking id), in calls of at most
        ``MAX_RESERVATION_BATCH``; the answers in the order of ``items``. Raises Unavailable
        when inventory cannot answer."""
        headers = {"Content-Type": "application/json"}
        if correlation_id:
            headers["X-Request-ID"] = correlation_id
        answers: list[ReservationItemResult] = []
        for start in range(0, len(items), MAX_RESERVATION_BATCH):
            chunk = items[start : start + MAX_RESERVATION_BATCH]
            answers += await self._reserve_batch(chunk, headers)
        return answers

    async def _reserve_batch(
        self, items: list[ReservationItem], headers: dict[str, str]
    ) -> list[ReservationItemResult]:
        response = await self._upstream.request(
            "POST",
            "/internal/v1/reservations",
            content=_encoder.encode(ReservationBatch(items=items)),
            headers=headers,
        )
        if response.status_code != 200:
            raise InventoryRefused(
                f"inventory answered {response.status_code}: {response.text[:300]}"
            )
        result = msgspec.json.decode(response.content, type=ReservationBatchResult)
        if [r.booking_id for r in result.items] != [i.booking_id for i in items]:
            raise InventoryRefused("inventory answered for other bookings than were asked")
        return result.items
