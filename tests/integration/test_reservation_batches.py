"""Inventory's batch of reservations: decided in order as if each were reserved alone, never
overselling beside single reservations, and refused whole when malformed or not the saga's."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx

from tests.harness.serving import bearer
from tests.integration.helpers import create_event


async def reserve_batch(
    inventory: httpx.AsyncClient, token: str, items: list[tuple[str, uuid.UUID, int]]
) -> list[dict[str, object]]:
    response = await inventory.post(
        "/internal/v1/reservations",
        json={
            "items": [{"event_id": e, "booking_id": str(b), "ticket_count": n} for e, b, n in items]
        },
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    answers: list[dict[str, object]] = response.json()["items"]
    return answers


async def test_a_batch_is_decided_in_order_as_if_each_were_reserved_alone(
    inventory: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    event = (await create_event(inventory, capacity=5))["id"]
    other = (await create_event(inventory, capacity=1))["id"]
    first, twice, unknown_event = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    answers = await reserve_batch(
        inventory,
        tokens["order"],
        [
            (event, first, 3),
            (event, twice, 2),
            (event, twice, 2),  # the same booking again: the same answer, seats taken once
            (other, first, 1),  # the first booking id asking for other seats: a conflict
            (str(uuid.uuid4()), unknown_event, 1),
            (event, uuid.uuid4(), 1),  # nothing left
            (other, uuid.uuid4(), 1),
        ],
    )
    assert [(a["outcome"], a["left_capacity"]) for a in answers] == [
        ("reserved", 2),
        ("reserved", 0),
        ("reserved", 0),
        ("conflict", None),
        ("event_not_found", None),
        ("insufficient", 0),
        ("reserved", 0),
    ]
    # A later batch repeating a booking gets its first answer, however capacity moved since.
    again = await reserve_batch(inventory, tokens["order"], [(event, first, 3)])
    assert again[0]["outcome"] == "reserved"
    assert again[0]["left_capacity"] == 2
    # The unknown event recorded nothing: that booking id can still reserve a real event.
    retry = await reserve_batch(inventory, tokens["order"], [(other, unknown_event, 1)])
    assert retry[0]["outcome"] == "insufficient"
    for event_id in (event, other):
        assert (await inventory.get(f"/api/v1/events/{event_id}")).json()["left_capacity"] == 0


async def test_concurrent_batches_and_single_reservations_never_oversell(
    inventory: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    event = (await create_event(inventory, capacity=50))["id"]
    order = bearer(tokens["order"])
    bookings_ = [uuid.uuid4() for _ in range(300)]

    async def single(booking_id: uuid.UUID) -> str:
        response = await inventory.post(
            f"/internal/v1/events/{event}/reservations",
            json={"booking_id": str(booking_id), "ticket_count": 1},
            headers=order,
        )
        status: str = response.json()["status"]
        return status

    async def batch(ids: list[uuid.UUID]) -> list[str]:
        answers = await reserve_batch(inventory, tokens["order"], [(event, b, 1) for b in ids])
        return [str(a["outcome"]) for a in answers]

    results = await asyncio.gather(
        *(batch(bookings_[i : i + 20]) for i in range(0, 200, 20)),
        *(single(b) for b in bookings_[200:]),
        # every booking of the first batch again, concurrently: each is decided once
        batch(bookings_[:20]),
    )
    outcomes: Counter[str] = Counter()
    for result in results[:-1]:
        outcomes.update([result] if isinstance(result, str) else result)
    assert outcomes == {"reserved": 50, "insufficient": 250}
    assert results[-1] == results[0]
    assert (await inventory.get(f"/api/v1/events/{event}")).json()["left_capacity"] == 0


async def test_a_malformed_batch_is_400_and_changes_nothing(
    inventory: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    event = (await create_event(inventory, capacity=5))["id"]
    item = {"event_id": event, "booking_id": str(uuid.uuid4()), "ticket_count": 1}
    bodies: list[dict[str, object]] = [
        {"items": []},
        {"items": [item, {**item, "ticket_count": 0}]},
        {"items": [item] * 501},
    ]
    for body in bodies:
        response = await inventory.post(
            "/internal/v1/reservations", json=body, headers=bearer(tokens["order"])
        )
        assert response.status_code == 400, body
        assert response.headers["content-type"] == "application/problem+json"
    assert (await inventory.get(f"/api/v1/events/{event}")).json()["left_capacity"] == 5
    refused = await inventory.post(
        "/internal/v1/reservations", json={"items": [item]}, headers=bearer(tokens["admin"])
    )
    assert refused.status_code == 403  # the admin may not reserve: only the order saga may
