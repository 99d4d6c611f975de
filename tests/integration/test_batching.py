"""Batched hot paths against the real database and services: group commit, batch reservations,
batched saga consumers, and the pool's ping of idle connections."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.harness import Stack, as_the_runner_does, bearer
from tests.harness import order_records as records
from tests.integration.flow import setup_sale
from tests.integration.helpers import create_event
from ticketing.booking.tables import bookings
from ticketing.contracts.events import BookingRequested
from ticketing.order import inventory_client as order_inventory_client
from ticketing.order.inventory_client import InventoryClient
from ticketing.order.service import OrderService
from ticketing.order.tables import event_store as order_store
from ticketing.order.tables import orders
from ticketing.shared import db, sql
from ticketing.shared.auth import OidcDiscovery
from ticketing.shared.consumer import Received
from ticketing.shared.db import create_engine
from ticketing.shared.group_commit import GroupCommit
from ticketing.shared.httpclient import new_session
from ticketing.shared.oauth_client import ClientCredentials
from ticketing.shared.settings import Settings
from ticketing.shared.unit_of_work import AlreadyRecorded, UnitOfWork, in_unit_of_work
from ticketing.shared.upstream import Upstream

probe = Table(
    "group_commit_probe",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("value", Integer, nullable=False),
)


@pytest.fixture
async def probe_engine(databases: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(databases, "order")
    async with engine.begin() as conn:
        await conn.run_sync(probe.metadata.drop_all)
        await conn.run_sync(probe.metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(probe.metadata.drop_all)
        await engine.dispose()


async def write_probes(uow: UnitOfWork, ids: Sequence[int]) -> None:
    uow.write(*(sql.insert_row(probe, {"id": i, "value": i}) for i in ids))


async def stored(engine: AsyncEngine) -> set[int]:
    async with engine.connect() as conn:
        return set((await conn.scalars(select(probe.c.id))).all())


# Group commit ------------------------------------------------------------------------------


async def test_concurrent_writes_share_transactions_and_each_returns_after_its_commit(
    probe_engine: AsyncEngine,
) -> None:
    commits = 0

    def count() -> None:
        nonlocal commits
        commits += 1

    writer: GroupCommit[int] = GroupCommit(probe_engine, write_probes, after_commit=count)

    async def write(i: int) -> None:
        await writer.write(i)
        assert i in await stored(probe_engine)  # answered only once committed

    await asyncio.gather(*(write(i) for i in range(200)))
    assert await stored(probe_engine) == set(range(200))
    assert writer.transactions == commits
    assert commits < 50  # 200 concurrent writes shared a handful of transactions


async def test_a_bad_item_fails_alone_and_the_rest_of_its_group_commits(
    probe_engine: AsyncEngine,
) -> None:
    await in_unit_of_work(probe_engine, lambda uow: write_probes(uow, [7]))
    writer: GroupCommit[int] = GroupCommit(probe_engine, write_probes, writers=1)
    results = await asyncio.gather(*(writer.write(i) for i in range(20)), return_exceptions=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [7]
    assert isinstance(results[7], IntegrityError)
    assert await stored(probe_engine) == set(range(20))


async def test_an_unreachable_database_fails_every_item_without_retrying_one_by_one(
    databases: Settings,
) -> None:
    engine = create_engine(
        Settings(mysql_url="mysql+aiomysql://root@127.0.0.1:1", db_pool_timeout=2), "order"
    )
    calls = 0

    async def write_many(uow: UnitOfWork, ids: Sequence[int]) -> None:
        nonlocal calls
        calls += 1

    writer: GroupCommit[int] = GroupCommit(engine, write_many)
    try:
        results = await asyncio.gather(
            *(writer.write(i) for i in range(10)), return_exceptions=True
        )
    finally:
        await engine.dispose()
    assert all(isinstance(r, OperationalError) for r in results)
    assert calls == 0


async def test_a_cancelled_caller_hears_of_it_only_after_its_item_committed(
    probe_engine: AsyncEngine,
) -> None:
    writer: GroupCommit[int] = GroupCommit(probe_engine, write_probes)
    task = asyncio.create_task(writer.write(1))
    await asyncio.sleep(0)  # queued, and the writer is on its way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await stored(probe_engine) == {1}  # written, and known to be before the caller ended


# Batch reservations -------------------------------------------------------------------------


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


# Batched saga consumers ---------------------------------------------------------------------


def requested(customer_id: str, event_id: str, count: int = 1) -> BookingRequested:
    return BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=uuid.UUID(customer_id),
        event_id=uuid.UUID(event_id),
        ticket_count=count,
        unit_price="25.00",
        total_price=f"{25 * count}.00",
        requested_at=datetime.now(UTC),
    )


@pytest.fixture
async def order_service(stack: Stack) -> AsyncIterator[OrderService]:
    async with new_session(timeout=5) as http:
        credentials = ClientCredentials(
            OidcDiscovery(stack.settings.oidc_issuer, http),
            http,
            "order-service",
            "order-service-secret",
        )
        upstream = Upstream(
            "inventory", stack.settings.base_url("inventory"), credentials=credentials
        )
        try:
            yield OrderService(records(stack.engines["order"]), InventoryClient(upstream))
        finally:
            await upstream.aclose()


async def order_rows(stack: Stack, booking_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    async with stack.engines["order"].connect() as conn:
        rows = await conn.execute(
            select(orders.c.booking_id, orders.c.status).where(orders.c.booking_id.in_(booking_ids))
        )
        return {row.booking_id: row.status for row in rows}


async def test_an_order_batch_is_applied_once_even_when_part_of_it_was_applied_before(
    stack: Stack, order_service: OrderService
) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=3)
    events = [requested(customer_id, event_id) for _ in range(5)]
    await order_service.handle_batch([Received(events[0], None), Received(events[1], None)])
    # Redelivered with new messages, twice over, and one booking twice with a new message id.
    twin = dataclasses.replace(events[4], message_id=uuid.uuid4())
    batch = [Received(e, "corr") for e in [*events, *events, twin]]
    with pytest.raises(AlreadyRecorded):  # the runner then hands each message over alone
        await order_service.handle_batch(batch)
    await as_the_runner_does(order_service.handle_batch, batch)
    statuses = await order_rows(stack, [e.booking_id for e in events])
    assert sorted(statuses.values()) == ["CONFIRMED"] * 3 + ["REJECTED"] * 2
    assert [statuses[e.booking_id] for e in events[:3]] == ["CONFIRMED"] * 3
    async with stack.engines["order"].connect() as conn:
        published = await conn.scalar(
            select(func.count())
            .select_from(order_store)
            .where(order_store.c.stream_id.in_([e.booking_id for e in events]))
        )
    assert published == 5
    left = (await stack.inventory.get(f"/api/v1/events/{event_id}")).json()["left_capacity"]
    assert left == 0


# The pool -----------------------------------------------------------------------------------


async def test_a_pooled_connection_that_died_while_idle_is_replaced_at_checkout(
    databases: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(databases, "order")
    try:
        async with engine.connect() as conn:
            victim = await conn.scalar(text("SELECT CONNECTION_ID()"))
        async with engine.connect() as conn:  # checked out again at once: not pinged, the same
            assert await conn.scalar(text("SELECT CONNECTION_ID()")) == victim
        killer = create_engine(databases, "order")
        async with killer.connect() as conn:
            await conn.execute(text(f"KILL CONNECTION {int(victim)}"))
        await killer.dispose()
        monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)
        async with engine.connect() as conn:  # idle long enough: pinged, found dead, replaced
            replacement = await conn.scalar(text("SELECT CONNECTION_ID()"))
        assert replacement != victim
    finally:
        await engine.dispose()


async def session_rollbacks(conn: AsyncConnection) -> int:
    row = (await conn.execute(text("SHOW SESSION STATUS LIKE 'Com_rollback'"))).one()
    return int(row[1])


async def test_a_committed_transaction_costs_no_rollback_and_a_read_leaves_nothing_open(
    databases: Settings,
) -> None:
    engine = create_engine(databases, "booking")  # one connection, reused for every step
    try:
        async with engine.connect() as conn:
            before = await session_rollbacks(conn)
            await conn.execute(select(func.count()).select_from(bookings))
            assert await conn.scalar(text("SELECT @@in_transaction")) == 1
        async with engine.connect() as conn:  # the read's transaction was rolled back on return
            assert await conn.scalar(text("SELECT @@in_transaction")) == 0
            assert await session_rollbacks(conn) == before + 1

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(select(func.count()).select_from(bookings))

        await db.run_transaction(engine, work)
        async with engine.connect() as conn:  # committed: nothing rolled back on return
            assert await conn.scalar(text("SELECT @@in_transaction")) == 0
            assert await session_rollbacks(conn) == before + 2  # only the previous read's
    finally:
        await engine.dispose()


async def test_an_order_batch_larger_than_one_reservation_call_is_split_in_order(
    stack: Stack, order_service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(order_inventory_client, "MAX_RESERVATION_BATCH", 2)
    customer_id, event_id = await setup_sale(stack, capacity=3)
    events = [requested(customer_id, event_id) for _ in range(5)]
    await order_service.handle_batch([Received(e, None) for e in events])
    statuses = await order_rows(stack, [e.booking_id for e in events])
    assert [statuses[e.booking_id] for e in events] == ["CONFIRMED"] * 3 + ["REJECTED"] * 2
