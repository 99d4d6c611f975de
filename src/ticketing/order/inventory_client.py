"""The order saga's view of inventory: the idempotent reservation and release calls."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from ticketing.contracts.inventory import (
    MAX_RESERVATION_BATCH,
    ReleaseBatch,
    ReleaseBatchResult,
    ReleaseItem,
    ReleaseItemResult,
    ReservationBatch,
    ReservationBatchResult,
    ReservationItem,
    ReservationItemResult,
)
from ticketing.shared.upstream import Upstream

_encoder = msgspec.json.Encoder()
T = TypeVar("T")


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
        answers: list[ReservationItemResult] = []
        for start in range(0, len(items), MAX_RESERVATION_BATCH):
            chunk = items[start : start + MAX_RESERVATION_BATCH]
            result = await self._post(
                "/internal/v1/reservations",
                ReservationBatch(items=chunk),
                ReservationBatchResult,
                correlation_id,
            )
            _check_answers([r.booking_id for r in result.items], [i.booking_id for i in chunk])
            answers += result.items
        return answers

    async def release_many(
        self, items: list[ReleaseItem], *, correlation_id: str | None = None
    ) -> list[ReleaseItemResult]:
        """Give many bookings' seats back (each at most once per booking id: a repeat answers
        as the first release did), in calls of at most ``MAX_RESERVATION_BATCH``; the answers
        in the order of ``items``. Raises Unavailable when inventory cannot answer."""
        answers: list[ReleaseItemResult] = []
        for start in range(0, len(items), MAX_RESERVATION_BATCH):
            chunk = items[start : start + MAX_RESERVATION_BATCH]
            result = await self._post(
                "/internal/v1/releases",
                ReleaseBatch(items=chunk),
                ReleaseBatchResult,
                correlation_id,
            )
            _check_answers([r.booking_id for r in result.items], [i.booking_id for i in chunk])
            answers += result.items
        return answers

    async def _post(self, path: str, body: Any, answer: type[T], correlation_id: str | None) -> T:
        headers = {"Content-Type": "application/json"}
        if correlation_id:
            headers["X-Request-ID"] = correlation_id
        response = await self._upstream.request(
            "POST", path, content=_encoder.encode(body), headers=headers
        )
        if response.status_code != 200:
            raise InventoryRefused(
                f"inventory answered {response.status_code}: {response.text[:300]}"
            )
        return msgspec.json.decode(response.content, type=answer)


def _check_answers(answered: list[Any], asked: list[Any]) -> None:
    if answered != asked:
        raise InventoryRefused("inventory answered for other bookings than were asked")
