"""Hostile input reaching the event stores: request metadata from headers, a client id of any
length as the actor, odd names and times, read back through the store, projections.verify and
the export."""

from __future__ import annotations

import uuid
from typing import Any, cast

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.serving import bearer
from tests.integration.booking_db import engine
from tests.integration.helpers import create_venue
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.contracts.booking import CustomerCreate
from ticketing.inventory import projections
from ticketing.inventory.repository import STORE
from ticketing.shared.store.eventstore import Cause

__all__ = ["engine"]  # fixtures


async def stored_metadata(db: AsyncEngine, stream_id: uuid.UUID) -> tuple[str | None, ...]:
    async with db.connect() as conn:
        last = (await STORE.stream(conn, stream_id))[-1]
    return (last.correlation_id, last.causation_id)


@pytest.mark.parametrize("header", ["X-Causation-ID", "X-Request-ID"])
async def test_a_non_ascii_id_header_is_not_stored_garbled(
    inventory: httpx.AsyncClient, inventory_db: AsyncEngine, header: str
) -> None:
    """A caller that sends a UTF-8 id (``réservation-1``) must find that id in the event's
    metadata, or none of its own, never the bytes read as Latin-1 (``rÃ©servation-1``)."""
    sent = "réservation-1"
    response = await inventory.post(
        "/api/v1/venues",
        json={"name": "Hall", "address": "Street", "total_capacity": 10},
        headers={header: sent.encode()},  # type: ignore[arg-type]
    )
    assert response.status_code == 201, response.text
    metadata = await stored_metadata(inventory_db, uuid.UUID(response.json()["id"]))
    garbled = sent.encode().decode("latin-1")
    assert garbled not in metadata, metadata


@pytest.mark.parametrize("starts_at", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"])
async def test_a_start_time_outside_what_utc_can_hold_is_refused_as_bad_input(
    inventory: httpx.AsyncClient, starts_at: str
) -> None:
    venue = await create_venue(inventory, 10)
    response = await inventory.post(
        "/api/v1/events",
        json={
            "name": "Edge of time",
            "venue_id": venue["id"],
            "total_capacity": 10,
            "ticket_price": "1.00",
            "starts_at": starts_at,
        },
    )
    assert response.status_code == 400, response.text


async def test_names_with_quotes_backslashes_and_control_characters_round_trip(
    inventory: httpx.AsyncClient, inventory_db: AsyncEngine, tokens: dict[str, str]
) -> None:
    name = 'O\'Brien \\"live" \x00\x1a\r\n\u2028 🎸 %s %(x)s'
    venue = await create_venue(inventory, 10)
    response = await inventory.post(
        "/api/v1/events",
        json={
            "name": name,
            "venue_id": venue["id"],
            "total_capacity": 10,
            "ticket_price": "1.00",
            "starts_at": "2027-03-01T20:00:00+05:45",
        },
    )
    assert response.status_code == 201, response.text
    event_id = uuid.UUID(response.json()["id"])
    reserve = await inventory.post(
        f"/internal/v1/events/{event_id}/reservations",
        json={"booking_id": str(uuid.uuid4()), "ticket_count": 1},
        headers={**bearer(tokens["order"]), "X-Causation-ID": "a'b\\c\";--"},
    )
    assert reserve.status_code == 200, reserve.text
    async with inventory_db.connect() as conn:
        stream = await STORE.stream(conn, event_id)
    assert stream[0].event.name == name
    assert stream[1].causation_id == "a'b\\c\";--"
    assert await projections.verify(inventory_db) == []


async def test_a_client_with_a_long_id_can_register_a_customer(engine: AsyncEngine) -> None:
    """Tokens put no limit on ``azp`` (its idempotency keys are kept under a digest for that
    reason), yet every event stores the client id whole as its ``actor``: a longer id must not
    fail every request of that client on the store's insert."""
    service = BookingService(
        SqlBookingRecords(engine, consumer=CONSUMER), cast(Any, None), max_tickets=10
    )
    long_client = Cause("c" * 300, correlation_id="req-long", causation_id="req-long")
    email = f"long.{uuid.uuid4().hex[:10]}@example.com"
    created = await service.create_customer(CustomerCreate("Lee", email), long_client)
    assert created.email == email
