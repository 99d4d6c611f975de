"""The capacity invariant under concurrency, against the real database over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import replace

import httpx
import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.serving import bearer
from tests.integration.helpers import create_event
from ticketing.contracts.inventory import ReservationOutcome
from ticketing.inventory import holdings
from ticketing.inventory import repository as repo
from ticketing.inventory.domain import SeatsReserved
from ticketing.inventory.reservation import Reservation
from ticketing.shared.db import sql
from ticketing.shared.db.engine import is_duplicate_key, retried
from ticketing.shared.store.eventstore import Cause

CAUSE = Cause(actor="test")

ORDER_TOKEN: dict[str, str] = {}


@pytest.fixture(autouse=True)
def order_token(tokens: dict[str, str]) -> None:
    """Reservations need inventory:reserve, which the order service's client holds."""
    ORDER_TOKEN.update(bearer(tokens["order"]))


async def reserve(
    client: httpx.AsyncClient, event_id: str, booking_id: uuid.UUID, count: int = 1
) -> httpx.Response:
    return await client.post(
        f"/internal/v1/events/{event_id}/reservations",
        json={"booking_id": str(booking_id), "ticket_count": count},
        headers=ORDER_TOKEN,
    )


async def left_capacity(client: httpx.AsyncClient, event_id: str) -> int:
    response = await client.get(f"/api/v1/events/{event_id}")
    assert response.status_code == 200
    left: int = response.json()["left_capacity"]
    return left


async def test_300_concurrent_bookings_for_50_seats_never_oversell(
    inventory: httpx.AsyncClient,
) -> None:
    event = await create_event(inventory, capacity=50)
    responses = await asyncio.gather(
        *(reserve(inventory, event["id"], uuid.uuid4()) for _ in range(300))
    )
    assert {r.status_code for r in responses} == {200}
    statuses = Counter(r.json()["status"] for r in responses)
    assert statuses == {"reserved": 50, "insufficient": 250}
    assert await left_capacity(inventory, event["id"]) == 0


async def test_the_same_booking_sent_20_times_concurrently_decrements_once(
    inventory: httpx.AsyncClient,
) -> None:
    event = await create_event(inventory, capacity=10)
    booking_id = uuid.uuid4()
    responses = await asyncio.gather(
        *(reserve(inventory, event["id"], booking_id, count=3) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {200}
    bodies = [r.json() for r in responses]
    assert all(
        b == {"booking_id": str(booking_id), "status": "reserved", "left_capacity": 7}
        for b in bodies
    )
    assert await left_capacity(inventory, event["id"]) == 7


async def test_a_reservation_larger_than_what_is_left_changes_nothing(
    inventory: httpx.AsyncClient,
) -> None:
    event = await create_event(inventory, capacity=5)
    first = await reserve(inventory, event["id"], uuid.uuid4(), count=3)
    assert first.json()["status"] == "reserved"
    too_many = await reserve(inventory, event["id"], uuid.uuid4(), count=3)
    assert too_many.status_code == 200
    assert too_many.json()["status"] == "insufficient"
    assert too_many.json()["left_capacity"] == 2
    assert await left_capacity(inventory, event["id"]) == 2


async def test_a_repeat_gets_the_first_answer_even_after_capacity_changed(
    inventory: httpx.AsyncClient,
) -> None:
    event = await create_event(inventory, capacity=2)
    late = uuid.uuid4()
    await reserve(inventory, event["id"], uuid.uuid4(), count=2)
    first = await reserve(inventory, event["id"], late)
    assert first.json()["status"] == "insufficient"
    again = await reserve(inventory, event["id"], late)
    assert again.json() == first.json()


async def test_reusing_a_booking_id_for_other_seats_is_a_conflict(
    inventory: httpx.AsyncClient,
) -> None:
    event = await create_event(inventory, capacity=10)
    booking_id = uuid.uuid4()
    assert (await reserve(inventory, event["id"], booking_id, count=1)).status_code == 200
    conflict = await reserve(inventory, event["id"], booking_id, count=2)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert await left_capacity(inventory, event["id"]) == 9


async def test_reserving_an_unknown_event_is_404_and_records_nothing(
    inventory: httpx.AsyncClient,
) -> None:
    booking_id = uuid.uuid4()
    missing = await reserve(inventory, str(uuid.uuid4()), booking_id)
    assert missing.status_code == 404
    assert missing.json()["status"] == 404
    # The booking id was not consumed: it can still reserve a real event.
    event = await create_event(inventory, capacity=1)
    assert (await reserve(inventory, event["id"], booking_id)).json()["status"] == "reserved"


async def test_bad_reservation_bodies_are_400(inventory: httpx.AsyncClient) -> None:
    event = await create_event(inventory, capacity=5)
    path = f"/internal/v1/events/{event['id']}/reservations"
    for body, field in [
        ({"booking_id": "nope", "ticket_count": 1}, "booking_id"),
        ({"booking_id": str(uuid.uuid4()), "ticket_count": 0}, "ticket_count"),
        ({"booking_id": str(uuid.uuid4())}, "ticket_count"),
    ]:
        response = await inventory.post(path, json=body, headers=ORDER_TOKEN)
        assert response.status_code == 400, body
        assert field in response.json()["detail"]
    assert await left_capacity(inventory, event["id"]) == 5


async def test_seats_a_transaction_does_not_have_are_refused_by_the_database(
    inventory: httpx.AsyncClient, inventory_db: AsyncEngine
) -> None:
    """The last guard against overselling: should a decision ever take more seats than are
    left, the check constraint refuses it and the whole transaction, reservation included,
    leaves nothing behind."""
    event = await create_event(inventory, capacity=2)
    event_id = uuid.UUID(event["id"])
    booking_id = uuid.uuid4()
    async with inventory_db.connect() as conn:
        (state,) = (await holdings.lock_states(conn, [event_id])).values()
    oversold = SeatsReserved(
        event_id=event_id, booking_id=booking_id, ticket_count=3, left_capacity=-1
    )
    reservation = Reservation(booking_id, event_id, 3, ReservationOutcome.RESERVED, -1)
    statements = holdings.reservation_statements(
        [(2, oversold)], [replace(state, left_capacity=-1, version=2)], [reservation], CAUSE
    )
    with pytest.raises(DBAPIError):
        await retried(inventory_db, lambda conn: sql.commit_all(conn, statements))
    assert await left_capacity(inventory, event["id"]) == 2
    async with inventory_db.connect() as conn:
        assert await holdings.get_reservations(conn, [booking_id]) == {}
        assert [e.event_type for e in await repo.STORE.stream(conn, event_id)] == ["EventScheduled"]


async def test_a_decision_from_a_stale_version_is_refused_whole(
    inventory: httpx.AsyncClient, inventory_db: AsyncEngine
) -> None:
    """Optimistic concurrency: two decisions made from the same snapshot (version 1) both
    append version 2; the second fails on the store's unique stream version, and nothing of it
    is left behind (neither its reservation nor its seats)."""
    event = await create_event(inventory, capacity=5)
    event_id = uuid.UUID(event["id"])
    async with inventory_db.connect() as conn:
        (state,) = (await holdings.lock_states(conn, [event_id])).values()

    def decision(booking_id: uuid.UUID) -> list[sql.Statement]:
        fact = SeatsReserved(
            event_id=event_id, booking_id=booking_id, ticket_count=1, left_capacity=4
        )
        reservation = Reservation(booking_id, event_id, 1, ReservationOutcome.RESERVED, 4)
        after = replace(state, left_capacity=4, version=2)
        return holdings.reservation_statements([(2, fact)], [after], [reservation], CAUSE)

    async def record(statements: list[sql.Statement]) -> None:
        await retried(inventory_db, lambda conn: sql.commit_all(conn, statements))

    first, second = uuid.uuid4(), uuid.uuid4()
    await record(decision(first))
    with pytest.raises(DBAPIError) as refused:
        await record(decision(second))
    assert is_duplicate_key(refused.value)
    async with inventory_db.connect() as conn:
        assert set(await holdings.get_reservations(conn, [first, second])) == {first}
        versions = [e.version for e in await repo.STORE.stream(conn, event_id)]
    assert versions == [1, 2]
    assert await left_capacity(inventory, event["id"]) == 4
