"""Steady booking load through the gateway, and the consistency check every fault scenario ends
with. The load behaves like a careful client: each booking has its own Idempotency-Key and is
retried on 5xx, 429 and connection errors (through the next gateway replica, when there are
several), so a crash never makes it book twice."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import MetaData, func, select

from tests.e2e.devprocess import DevProcess, pending_bookings
from ticketing.booking.tables import bookings
from ticketing.inventory.tables import events, reservations
from ticketing.order.tables import inbox as order_inbox
from ticketing.order.tables import orders
from ticketing.shared.eventstore import event_store_table

FULL = os.environ.get("TICKETING_CHAOS_SCALE") == "full"


def scaled(short: float, full: float) -> float:
    """Durations of the short suite (every test run) and of ``make chaos``."""
    return full if FULL else short


@dataclass
class Load:
    accepted: dict[str, str] = field(default_factory=dict)  # booking id -> event id
    refused: Counter[int] = field(default_factory=Counter)
    gave_up: int = 0
    retries: int = 0


@dataclass
class Sale:
    events: dict[str, int]  # event id -> capacity
    customers: list[str]


async def prepare_sale(api: httpx.AsyncClient, events_count: int, capacity: int) -> Sale:
    venue = await api.post(
        "/api/v1/venues", json={"name": "Chaos", "address": "1 Fault Ln", "total_capacity": 10_000}
    )
    created: dict[str, int] = {}
    for index in range(events_count):
        event = await api.post(
            "/api/v1/events",
            json={
                "name": f"Chaos {index}",
                "venue_id": venue.json()["id"],
                "total_capacity": capacity,
                "ticket_price": "10.00",
            },
        )
        created[event.json()["id"]] = capacity
    customers = []
    for _ in range(4):
        customer = await api.post(
            "/api/v1/customers",
            json={"name": "C", "email": f"c.{uuid.uuid4().hex[:10]}@example.com"},
        )
        customers.append(customer.json()["id"])
    return Sale(created, customers)


async def book_once(
    apis: Sequence[httpx.AsyncClient], first: int, body: dict[str, Any], load: Load
) -> None:
    key = str(uuid.uuid4())
    deadline = asyncio.get_running_loop().time() + 120
    for attempt in itertools.count(first):
        if asyncio.get_running_loop().time() >= deadline:
            break
        api = apis[attempt % len(apis)]
        try:
            response = await api.post(
                "/api/v1/bookings", json=body, headers={"Idempotency-Key": key}
            )
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 202:
            load.accepted[response.json()["id"]] = body["event_id"]
            return
        retry = (
            response is None
            or response.status_code >= 500
            or response.status_code == 429
            or "retry-after" in response.headers
        )
        if not retry:
            assert response is not None
            load.refused[response.status_code] += 1
            return
        load.retries += 1
        await asyncio.sleep(0.3)
    load.gave_up += 1


async def steady_load(
    apis: Sequence[httpx.AsyncClient], sale: Sale, *, rate: float, seconds: float
) -> Load:
    """``rate`` booking requests a second for ``seconds``, each seen through to an answer, sent
    in turn through ``apis`` (one client per gateway replica)."""
    load = Load()
    event_ids = list(sale.events)
    tasks = []
    for index in range(int(rate * seconds)):
        body = {
            "customer_id": sale.customers[index % len(sale.customers)],
            "event_id": event_ids[index % len(event_ids)],
            "ticket_count": 1 + index % 3,
        }
        tasks.append(asyncio.create_task(book_once(apis, index, body, load)))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)
    return load


async def outbox_backlog(dev: DevProcess) -> dict[str, int]:
    """Events waiting for the relay, per service."""
    backlog = {}
    for service in ("booking", "order"):
        table = event_store_table(MetaData())
        async with dev.engines[service].connect() as conn:
            backlog[service] = int(
                await conn.scalar(
                    select(func.count()).select_from(table).where(table.c.published_at.is_(None))
                )
                or 0
            )
    return backlog


async def check_consistency(
    dev: DevProcess, load: Load, sale: Sale, settle: float = 120
) -> dict[str, int]:
    """Every accepted booking settled; confirmed tickets equal the capacity taken; one order
    per confirmed booking; no message applied twice; the projections agree with the events."""
    assert load.gave_up == 0, "some bookings never got an answer"
    assert load.accepted, "the load was not accepted at all"
    booking_ids = [uuid.UUID(b) for b in load.accepted]
    deadline = asyncio.get_running_loop().time() + settle
    while True:
        pending = await pending_bookings(dev.engines["booking"], booking_ids)
        if pending == 0:
            break
        if asyncio.get_running_loop().time() > deadline:
            # Say what was stuck where, for the next person to read this failure.
            raise AssertionError(
                f"{pending} of {len(booking_ids)} bookings still PENDING after {settle} s; "
                f"outboxes: {await outbox_backlog(dev)}; the stack's log ends with:\n"
                + dev.log_path.read_text(errors="replace")[-4000:]
            )
        await asyncio.sleep(0.5)
    event_ids = [uuid.UUID(e) for e in sale.events]
    async with dev.engines["booking"].connect() as conn:
        rows = (
            await conn.execute(
                select(
                    bookings.c.id, bookings.c.event_id, bookings.c.ticket_count, bookings.c.status
                ).where(bookings.c.event_id.in_(event_ids))
            )
        ).all()
    assert {row.id for row in rows} >= set(booking_ids)  # nothing accepted was lost
    assert len(rows) == len(booking_ids)  # and nothing was booked twice
    statuses = Counter(row.status for row in rows)
    assert set(statuses) <= {"CONFIRMED", "REJECTED"}
    confirmed = {row.id: row for row in rows if row.status == "CONFIRMED"}
    async with dev.engines["inventory"].connect() as conn:
        capacity = {
            row.id: (row.total_capacity, row.left_capacity)
            for row in await conn.execute(
                select(events.c.id, events.c.total_capacity, events.c.left_capacity).where(
                    events.c.id.in_(event_ids)
                )
            )
        }
        reserved = {
            row.booking_id: row.ticket_count
            for row in await conn.execute(
                select(reservations.c.booking_id, reservations.c.ticket_count).where(
                    reservations.c.event_id.in_(event_ids), reservations.c.status == "reserved"
                )
            )
        }
    for event_id, (total, left) in capacity.items():
        sold = sum(r.ticket_count for r in confirmed.values() if r.event_id == event_id)
        assert sold == total - left, f"event {event_id}: {sold} confirmed, {total - left} taken"
    assert set(reserved) == set(confirmed)
    async with dev.engines["order"].connect() as conn:
        order_rows = (
            await conn.execute(
                select(orders.c.booking_id, orders.c.status).where(orders.c.event_id.in_(event_ids))
            )
        ).all()
        applied = await conn.scalar(select(func.count()).select_from(order_inbox))
    assert len(order_rows) == len({row.booking_id for row in order_rows})  # one order per booking
    assert {row.booking_id for row in order_rows if row.status == "CONFIRMED"} == set(confirmed)
    assert int(applied or 0) >= len(order_rows)
    # The state tables are what the events fold into (the CLI exits 1, naming every row, if not).
    verified = await dev.run_cli("projections", "verify")
    for service in ("inventory", "booking", "order"):
        assert f"{service}: agree" in verified
    return {
        "accepted": len(booking_ids),
        "confirmed": statuses["CONFIRMED"],
        "rejected": statuses["REJECTED"],
        "retries": load.retries,
    }


class Passage:
    """A TCP forwarder to a server (Redis), which a test can take away for a while: it then
    refuses connections and drops the open ones, as a server that went down does."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def away(self, seconds: float) -> None:
        await self.stop()
        await asyncio.sleep(seconds)
        await self.start(self.port)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._open.difference_update((writer, upstream_writer))
