"""One Idempotency-Key, one booking: a retry that takes over a key still in flight and the
request it took over never both write a booking, keys are compared byte for byte, and each
client has keys of its own (real MariaDB, real inventory over HTTP)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.harness import Stack, bearer, serve
from tests.integration.flow import book, setup_sale
from ticketing.booking import repository as repo
from ticketing.booking.api import request_booking
from ticketing.booking.domain import KeyTakenOver
from ticketing.booking.inventory_client import InventoryClient
from ticketing.booking.records import SqlBookingRecords, write_bookings
from ticketing.booking.repository import KeyClaim, NewBooking
from ticketing.booking.service import CONSUMER, BookingService
from ticketing.booking.tables import bookings, event_store, idempotency_keys
from ticketing.contracts.booking import Booking, BookingStatus
from ticketing.contracts.events import BookingRequested
from ticketing.contracts.inventory import Event
from ticketing.shared import sql
from ticketing.shared.clock import utcnow
from ticketing.shared.eventstore import Cause
from ticketing.shared.group_commit import GroupCommit
from ticketing.shared.http import create_http_app
from ticketing.shared.ids import new_id
from ticketing.shared.oauth_client import upstream_as
from ticketing.shared.upstream import Upstream

PROBLEM = "application/problem+json"
ABANDONED_AFTER = timedelta(seconds=30)


class GatedInventory(InventoryClient):
    """Holds every read of an event until the test opens its gate: the request has claimed its
    key by then and waits, as a request stuck on a slow dependency or a busy pool does."""

    def __init__(self, upstream: Upstream) -> None:
        super().__init__(upstream)
        self.arrived: asyncio.Queue[asyncio.Event] = asyncio.Queue()
        self.gates: list[asyncio.Event] = []

    def open_all(self) -> None:
        """Let every request go (a failed test must not leave one waiting at shutdown)."""
        for gate in self.gates:
            gate.set()

    async def get_event(
        self,
        event_id: uuid.UUID,
        *,
        correlation_id: str | None = None,
    ) -> Event:
        gate = asyncio.Event()
        self.gates.append(gate)
        await self.arrived.put(gate)
        await gate.wait()
        return await super().get_event(event_id, correlation_id=correlation_id)


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


async def bookings_of(stack: Stack, event_id: str) -> list[uuid.UUID]:
    async with stack.engines["booking"].connect() as conn:
        rows = await conn.execute(
            select(bookings.c.id).where(bookings.c.event_id == uuid.UUID(event_id))
        )
        return [row.id for row in rows]


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


class Race:
    """The same keyed request sent twice; each waits at inventory until its gate opens."""

    def __init__(self, booking: httpx.AsyncClient, inventory: GatedInventory, event_id: str):
        self.booking = booking
        self.inventory = inventory
        self.key = f"race-{uuid.uuid4()}"
        self.event_id = event_id

    async def send(self, customer_id: str) -> httpx.Response:
        body = {"customer_id": customer_id, "event_id": self.event_id, "ticket_count": 1}
        headers = {"Idempotency-Key": self.key}
        return await self.booking.post("/api/v1/bookings", json=body, headers=headers)

    async def start(self, customer_id: str) -> tuple[asyncio.Task[httpx.Response], asyncio.Event]:
        task = asyncio.create_task(self.send(customer_id))
        return task, await self.inventory.arrived.get()  # it holds the key now

    async def abandon(self, stack: Stack) -> None:
        """Make the request holding the key look in flight for longer than the service waits
        before a retry may take the key over."""
        async with stack.engines["booking"].begin() as conn:
            await conn.execute(
                idempotency_keys.update()
                .where(idempotency_keys.c.idem_key == self.key)
                .values(created_at=utcnow() - 2 * ABANDONED_AFTER)
            )


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


async def test_a_take_over_that_commits_first_wins_and_the_original_gets_409(
    stack: Stack, booking: httpx.AsyncClient, inventory: GatedInventory
) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    race = Race(booking, inventory, event_id)
    original, original_gate = await race.start(customer_id)
    await race.abandon(stack)
    retry, retry_gate = await race.start(customer_id)  # takes the key over
    retry_gate.set()
    winner = await retry
    original_gate.set()
    check_lost(await original)
    await check_one_booking(stack, race, winner)


async def test_an_original_that_commits_after_its_key_was_taken_over_gets_409(
    stack: Stack, booking: httpx.AsyncClient, inventory: GatedInventory
) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    race = Race(booking, inventory, event_id)
    original, original_gate = await race.start(customer_id)
    await race.abandon(stack)
    retry, retry_gate = await race.start(customer_id)  # takes the key over
    original_gate.set()
    check_lost(await original)
    retry_gate.set()
    await check_one_booking(stack, race, await retry)


async def test_keys_differing_in_case_are_different_keys(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    key = f"case-{uuid.uuid4().hex}"
    lower = await book(stack, customer_id, event_id, 1, **{"Idempotency-Key": key.lower()})
    upper = await book(stack, customer_id, event_id, 1, **{"Idempotency-Key": key.upper()})
    assert lower.status_code == upper.status_code == 202, upper.text
    assert "idempotent-replayed" not in upper.headers
    assert lower.json()["id"] != upper.json()["id"]
    again = await book(stack, customer_id, event_id, 1, **{"Idempotency-Key": key.upper()})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == upper.content
    assert len(await bookings_of(stack, event_id)) == 2


async def test_two_clients_with_one_key_get_bookings_of_their_own(
    stack: Stack, tokens: dict[str, str]
) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    key = f"shared-{uuid.uuid4()}"
    admin = await book(stack, customer_id, event_id, 1, **{"Idempotency-Key": key})
    other_client = {"Idempotency-Key": key, **bearer(tokens["client"])}
    client = await book(stack, customer_id, event_id, 1, **other_client)
    assert admin.status_code == client.status_code == 202, client.text
    assert "idempotent-replayed" not in client.headers
    assert admin.json()["id"] != client.json()["id"]
    # A different body under the same key is that client's business alone.
    other_body = await book(stack, customer_id, event_id, 2, **other_client)
    assert other_body.status_code == 422
    replay = await book(stack, customer_id, event_id, 1, **{"Idempotency-Key": key})
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == admin.content
    assert len(await bookings_of(stack, event_id)) == 2


def new_booking(customer_id: str, event_id: str, claim: KeyClaim | None) -> NewBooking:
    """One accepted booking as the service hands it to its group commit."""
    booking = Booking(
        id=new_id(),
        status=BookingStatus.PENDING,
        customer_id=uuid.UUID(customer_id),
        event_id=uuid.UUID(event_id),
        ticket_count=1,
        unit_price="25.00",
        total_price="25.00",
        created_at=datetime.now(UTC),
    )
    requested = BookingRequested(
        message_id=new_id(),
        booking_id=booking.id,
        customer_id=booking.customer_id,
        event_id=booking.event_id,
        ticket_count=1,
        unit_price="25.00",
        total_price="25.00",
        requested_at=booking.created_at,
    )
    cause = Cause("ticketing-admin")
    return NewBooking(booking, requested, cause, claim)


async def test_a_request_whose_key_was_taken_over_fails_alone_in_its_group(
    stack: Stack,
) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    engine = stack.engines["booking"]
    held = [KeyClaim.new("ticketing-admin", f"held-{uuid.uuid4()}") for _ in range(2)]
    lost = KeyClaim.new("ticketing-admin", f"lost-{uuid.uuid4()}")
    async with engine.begin() as conn:
        for claim in [*held, lost]:
            assert await repo.claim_key(conn, claim, "fingerprint")
        retry = KeyClaim(lost.client, lost.key, secrets.token_hex(16))
        assert await repo.take_over_key(conn, retry, held_by=lost.token)
    items = [
        new_booking(customer_id, event_id, held[0]),
        new_booking(customer_id, event_id, lost),
        new_booking(customer_id, event_id, None),
        new_booking(customer_id, event_id, held[1]),
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


async def test_keys_and_clients_are_compared_byte_for_byte(stack: Stack) -> None:
    """Keys that a case-insensitive, space-padded collation would take for one are all
    different, and so is one key of two clients (or of two client ids differing in case)."""
    tag = uuid.uuid4().hex
    keys = [f"{tag}-abc", f"{tag}-ABC", f"{tag}-abc ", f"{tag}-\u00df", f"{tag}-ss"]
    clients = ["ticketing-admin", "Ticketing-Admin", "ticketing-client"]
    async with stack.engines["booking"].begin() as conn:
        for client in clients:
            for key in keys:
                assert await repo.claim_key(conn, KeyClaim.new(client, key), "f"), (client, key)
        assert not await repo.claim_key(conn, KeyClaim.new(clients[0], keys[0]), "f")
        found = await conn.scalar(
            select(func.count())
            .select_from(idempotency_keys)
            .where(idempotency_keys.c.idem_key.startswith(tag))
        )
    assert found == len(keys) * len(clients)


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


async def rows_scanned(conn: AsyncConnection) -> int:
    """Rows this connection has read in table scans so far."""
    status = text("SHOW SESSION STATUS LIKE 'Handler_read_rnd_next'")
    return int((await conn.execute(status)).one()[1])


async def test_recording_one_answer_reads_one_row_not_the_whole_table(stack: Stack) -> None:
    """A booking committed alone records its key's answer with one completion: MariaDB ran the
    one-row ``(a, b, c) IN ((...))`` form as a scan of every key."""
    claims = [KeyClaim.new("scan-test", f"key-{uuid.uuid4().hex}") for _ in range(300)]
    async with stack.engines["booking"].begin() as conn:
        for claim in claims:
            assert await repo.claim_key(conn, claim, "f")
    done = repo.Completion(claims[0], uuid.uuid4(), "{}")
    async with stack.engines["booking"].begin() as conn:
        before = await rows_scanned(conn)
        changed = await sql.run(conn, repo.complete_keys_statement([done]))
        after = await rows_scanned(conn)
    assert changed == 1
    assert after - before < 10  # a table scan reads every row of the table


async def test_a_client_id_of_any_length_can_hold_keys(stack: Stack) -> None:
    long_client = "c" * 5000  # tokens put no limit on azp
    async with stack.engines["booking"].begin() as conn:
        assert await repo.claim_key(conn, KeyClaim.new(long_client, "k"), "f")
        assert not await repo.claim_key(conn, KeyClaim.new(long_client, "k"), "f")
        assert await repo.claim_key(conn, KeyClaim.new(long_client + "x", "k"), "f")
