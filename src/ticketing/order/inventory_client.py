"""The order saga's view of inventory: the idempotent reservation and release calls."""

from __future__ import annotations

from collections.abc import Callable
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
from ticketing.shared.http.upstream import Upstream

_encoder = msgspec.json.Encoder()
T = TypeVar("T")
Item = TypeVar("Item", ReservationItem, ReleaseItem)
BatchResult = TypeVar("BatchResult", ReservationBatchResult, ReleaseBatchResult)


class InventoryRefused(Exception):
    """Inventory rejected the request as malformed: retrying will not help."""


class InventoryClient:
    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    async def reserve_many(
        self, items: list[ReservationItem], *, correlation_id: str | None = None
    ) -> list[ReservationItemResult]:
        """Reserve for many bookings (each at most once per booking id); the answers in the
        order of ``items``. Raises Unavailable when inventory cannot answer."""
        return await self._in_batches(
            "/internal/v1/reservations",
            items,
            lambda chunk: ReservationBatch(items=chunk),
            ReservationBatchResult,
            correlation_id,
        )

    async def release_many(
        self, items: list[ReleaseItem], *, correlation_id: str | None = None
    ) -> list[ReleaseItemResult]:
        """Give many bookings' seats back (each at most once per booking id: a repeat answers
        as the first release did); the answers in the order of ``items``. Raises Unavailable
        when inventory cannot answer."""
        return await self._in_batches(
            "/internal/v1/releases",
            items,
            lambda chunk: ReleaseBatch(items=chunk),
            ReleaseBatchResult,
            correlation_id,
        )

    async def _in_batches(
        self,
        path: str,
        items: list[Item],
        batch: Callable[[list[Item]], Any],
        result: type[BatchResult],
        correlation_id: str | None,
    ) -> list[Any]:
        """POST ``items`` in calls of at most ``MAX_RESERVATION_BATCH``, each answer checked
        to be for the bookings asked, in their order."""
        answers: list[Any] = []
        for start in range(0, len(items), MAX_RESERVATION_BATCH):
            chunk = items[start : start + MAX_RESERVATION_BATCH]
            answer = await self._post(path, batch(chunk), result, correlation_id)
            _check_answers([r.booking_id for r in answer.items], [i.booking_id for i in chunk])
            answers += answer.items
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
