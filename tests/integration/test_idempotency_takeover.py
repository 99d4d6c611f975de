"""One Idempotency-Key, one booking, when a retry takes over a key still in flight: the retry and
the request it took over never both write a booking, whichever commits first, alone or in a
group, and two retries taking one key over at once leave it to one (real MariaDB, real inventory
over HTTP)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select, text

from tests.harness.serving import Stack, bearer, serve
from tests.integration.booking_db import new_booking
from tests.integration.flow import bookings_of, setup_sale
from tests.integration.key_race import ABANDONED_AFTER, GatedInventory, Race
from ticketing.booking import idempotency
from ticketing.booking.api.booking_request import request_booking
from ticketing.booking.domain import KeyTakenOver
from ticketing.booking.idempotency import KeyClaim
from ticketing.booking.records import SqlBookingRecords, write_bookings
from ticketing.booking.repository import NewBooking
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.booking.tables import event_store, idempotency_keys
from ticketing.shared.app import create_http_app
from ticketing.shared.auth.client_credentials import upstream_as
from ticketing.shared.db.group_commit import GroupCommit
from ticketing.shared.store.eventstore import Cause

PROBLEM = "application/problem+json"


@pytest.fixture
async def inventory(stack: Stack) -> AsyncIterator[GatedInventory]:
    async with upstream_as(
        stack.settings, "inventory", "booking-service", "booking-service-secret"
    ) as upstream:
        yield GatedInventory(upstream)


@pytest.fixture
async def booking(
    stack: Stack, inventory: GatedInventory, tokens: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """Booking's request route, served over HTTP with the real token check and error mapping,
    on a service whose reads of inventory wait at ``inventory``'s gates."""
    service = BookingService(
        SqlBookingRecords(stack.engines["booking"], consumer=CONSUMER),
        inventory,
        max_tickets=10,
        abandoned_after=ABANDONED_AFTER,
    )

    @asynccontextmanager
    async def bookings(app: Litestar) -> AsyncIterator[None]:
        app.state.bookings = service
        yield

    app = create_http_app(
        service="booking",
        settings=stack.settings,
        route_handlers=[request_booking],
        lifespan=[bookings],
    )
    async with (
        serve(app) as url,
        httpx.AsyncClient(base_url=url, headers=bearer(tokens["admin"]), timeout=30) as client,
    ):
        try:
            yield client
        finally:
            inventory.open_all()  # before the server stops: it waits for every request


async def events_of(stack: Stack, event_id: str) -> list[str]:
    """The bookings whose BookingRequested events for ``event_id`` are in the store."""
    async with stack.engines["booking"].connect() as conn:
        rows = await conn.execute(
            select(event_store.c.stream_id).where(
                event_store.c.message_key == event_id,
                event_store.c.event_type == "BookingRequested",
            )
        )
        return [str(row.stream_id) for row in rows]


async def stored_answer(stack: Stack, key: str) -> uuid.UUID | None:
    async with stack.engines["booking"].connect() as conn:
        rows = (
            await conn.execute(
                select(idempotency_keys.c.booking_id).where(idempotency_keys.c.idem_key == key)
            )
        ).all()
    assert len(rows) == 1
    booking_id: uuid.UUID | None = rows[0].booking_id
    return booking_id


def check_lost(response: httpx.Response) -> None:
    """The request whose key was taken over is told so, and when to ask again."""
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["retry-after"] == "1"
    assert "took it over" in response.json()["detail"]


async def check_one_booking(stack: Stack, race: Race, winner: httpx.Response) -> None:
    """Only the winner's booking and event were written, and the key answers with it."""
    assert winner.status_code == 202, winner.text
    booking_id = uuid.UUID(winner.json()["id"])
    assert await bookings_of(stack, race.event_id) == [booking_id]
    assert await events_of(stack, race.event_id) == [str(booking_id)]
    assert await stored_answer(stack, race.key) == booking_id
    replay = await race.send(str(winner.json()["customer_id"]))
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == winner.content


Held = tuple[asyncio.Task[httpx.Response], asyncio.Event]


async def taken_over(
    stack: Stack, booking: httpx.AsyncClient, inventory: GatedInventory
) -> tuple[Race, Held, Held]:
    """A request held at inventory until abandoned, and its retry, which took its key over and
    is held too: each with the gate that lets it go on."""
    customer_id, event_id = await setup_sale(stack, capacity=10)
    race = Race(booking, inventory, event_id)
    original = await race.start(customer_id)
    await race.abandon(stack)
    retry = await race.start(customer_id)  # takes the key over
    return race, original, retry


async def test_a_take_over_that_commits_first_wins_and_the_original_gets_409(
    stack: Stack, booking: httpx.AsyncClient, inventory: GatedInventory
) -> None:
    race, (original, original_gate), (retry, retry_gate) = await taken_over(
        stack, booking, inventory
    )
    retry_gate.set()
    winner = await retry
    original_gate.set()
    check_lost(await original)
    await check_one_booking(stack, race, winner)


async def test_an_original_that_commits_after_its_key_was_taken_over_gets_409(
    stack: Stack, booking: httpx.AsyncClient, inventory: GatedInventory
) -> None:
    race, (original, original_gate), (retry, retry_gate) = await taken_over(
        stack, booking, inventory
    )
    original_gate.set()
    check_lost(await original)
    retry_gate.set()
    await check_one_booking(stack, race, await retry)


def admin_booking(customer_id: str, event_id: str, claim: KeyClaim | None) -> NewBooking:
    """One accepted booking of a ticket by the admin client, as the service hands it to its
    group commit."""
    return new_booking(
        uuid.UUID(customer_id),
        claim,
        event_id=uuid.UUID(event_id),
        tickets=1,
        cause=Cause("ticketing-admin"),
    )


async def test_a_request_whose_key_was_taken_over_fails_alone_in_its_group(
    stack: Stack,
) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    engine = stack.engines["booking"]
    held = [KeyClaim.new("ticketing-admin", f"held-{uuid.uuid4()}") for _ in range(2)]
    lost = KeyClaim.new("ticketing-admin", f"lost-{uuid.uuid4()}")
    async with engine.begin() as conn:
        for claim in [*held, lost]:
            assert await idempotency.claim_key(conn, claim, "fingerprint")
        retry = KeyClaim(lost.client, lost.key, secrets.token_hex(16))
        assert await idempotency.take_over_key(conn, retry, held_by=lost.token)
    items = [
        admin_booking(customer_id, event_id, held[0]),
        admin_booking(customer_id, event_id, lost),
        admin_booking(customer_id, event_id, None),
        admin_booking(customer_id, event_id, held[1]),
    ]
    writer = GroupCommit(engine, write_bookings, writers=1)
    # Queued in one go, the four are one group; the group fails and is written one by one.
    results = await asyncio.gather(*(writer.write(item) for item in items), return_exceptions=True)
    assert [type(result) for result in results] == [
        type(None),
        KeyTakenOver,
        type(None),
        type(None),
    ]
    assert writer.transactions == 3
    written = {items[i].booking.id for i in (0, 2, 3)}
    assert set(await bookings_of(stack, event_id)) == written
    assert set(await events_of(stack, event_id)) == {str(booking_id) for booking_id in written}
    assert await stored_answer(stack, held[0].key) == items[0].booking.id
    assert await stored_answer(stack, held[1].key) == items[3].booking.id
    assert await stored_answer(stack, lost.key) is None  # still the retry's, in flight


async def claims_waiting(stack: Stack, key: str) -> int:
    """Requests whose insert of ``key`` is running (held up while the test locks its row)."""
    async with stack.engines["booking"].connect() as conn:
        running = await conn.scalar(
            text(
                "SELECT COUNT(*) FROM information_schema.processlist "
                "WHERE db = :db AND info LIKE 'INSERT INTO idempotency_keys%' AND info LIKE :key"
            ),
            {"db": stack.settings.database_name("booking"), "key": f"%{key}%"},
        )
    return int(running or 0)


async def test_two_retries_taking_one_key_over_at_once_leave_it_to_one(
    stack: Stack, booking: httpx.AsyncClient, inventory: GatedInventory
) -> None:
    """Both retries find the key taken (each holding a shared lock on its row after the failed
    insert) and both try to take it over: the database kills one of them as a deadlock, and that
    one is retried and told that the key is in flight."""
    customer_id, event_id = await setup_sale(stack, capacity=10)
    race = Race(booking, inventory, event_id)
    original, original_gate = await race.start(customer_id)
    await race.abandon(stack)
    async with stack.engines["booking"].connect() as blocker:
        await blocker.execute(
            select(idempotency_keys.c.claim)
            .where(idempotency_keys.c.idem_key == race.key)
            .with_for_update()
        )
        retries = [asyncio.create_task(race.send(customer_id)) for _ in range(2)]
        async with asyncio.timeout(10):
            while await claims_waiting(stack, race.key) < 2:  # both wait at the key's row
                assert not any(task.done() for task in retries)
                await asyncio.sleep(0.01)
        await blocker.commit()
    taker_gate = await inventory.arrived.get()  # one of them took the key over
    (other,), (taker,) = await asyncio.wait(retries, return_when=asyncio.FIRST_COMPLETED)
    refused = other.result()
    assert refused.status_code == 409, refused.text
    assert "still being processed" in refused.json()["detail"]
    taker_gate.set()
    original_gate.set()
    check_lost(await original)
    await check_one_booking(stack, race, await taker)
