"""The saga's release call to inventory, against a stand-in upstream answering as inventory's
``POST /internal/v1/releases`` contract says (inventory's endpoint itself is tested with
inventory)."""

from __future__ import annotations

import uuid
from typing import Any, cast

import msgspec
import pytest

from ticketing.contracts.inventory import (
    ReleaseBatch,
    ReleaseBatchResult,
    ReleaseItem,
    ReleaseItemResult,
    ReleaseOutcome,
)
from ticketing.order import inventory_client
from ticketing.order.inventory_client import InventoryClient, InventoryRefused
from ticketing.shared.http.upstream import Upstream
from ticketing.shared.http.upstream_answers import Reply


class Releases:
    """Answers each release batch in order, every booking released with 2 seats, unless told
    to answer something else."""

    def __init__(self, status: int = 200, *, reorder: bool = False) -> None:
        self.status = status
        self.reorder = reorder
        self.calls: list[tuple[str, str, ReleaseBatch, dict[str, str]]] = []

    async def request(
        self, method: str, path: str, *, content: bytes, headers: dict[str, str]
    ) -> Reply:
        batch = msgspec.json.decode(content, type=ReleaseBatch)
        self.calls.append((method, path, batch, headers))
        items = [
            ReleaseItemResult(item.booking_id, ReleaseOutcome.RELEASED, 2, 8)
            for item in batch.items
        ]
        if self.reorder:
            items.reverse()
        return Reply(self.status, msgspec.json.encode(ReleaseBatchResult(items=items)))


def items(count: int) -> list[ReleaseItem]:
    return [
        ReleaseItem(
            event_id=uuid.uuid4(),
            booking_id=uuid.uuid4(),
            reason="cancelled" if n % 2 else "expired",
            causation_id=f"message-{n}",
        )
        for n in range(count)
    ]


def client(upstream: Releases) -> InventoryClient:
    stand_in: Any = upstream
    return InventoryClient(cast(Upstream, stand_in))


async def test_releases_go_in_calls_of_the_batch_limit_and_answer_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inventory_client, "MAX_RESERVATION_BATCH", 2)
    upstream = Releases()
    asked = items(5)
    answers = await client(upstream).release_many(asked, correlation_id="trace-7")
    assert [a.booking_id for a in answers] == [i.booking_id for i in asked]
    assert [len(batch.items) for _, _, batch, _ in upstream.calls] == [2, 2, 1]
    assert [item for _, _, batch, _ in upstream.calls for item in batch.items] == asked
    for method, path, _, headers in upstream.calls:
        assert (method, path) == ("POST", "/internal/v1/releases")
        assert headers == {"Content-Type": "application/json", "X-Request-ID": "trace-7"}


async def test_a_refusal_or_answers_for_other_bookings_raise() -> None:
    with pytest.raises(InventoryRefused, match="answered 422"):
        await client(Releases(422)).release_many(items(1))
    with pytest.raises(InventoryRefused, match="other bookings"):
        await client(Releases(reorder=True)).release_many(items(2))
