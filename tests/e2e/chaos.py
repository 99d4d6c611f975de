"""Booking load through the gateway, and the consistency check every fault scenario ends with.

The load behaves like a careful client: each booking has its own Idempotency-Key and is retried
on 5xx, 429 and connection errors (through the next gateway replica, when there are several),
so a crash never makes it book twice. The mixed load also walks bookings through their
lifecycle (ADR 17): holds confirmed, holds left to expire, cancellations of HELD, CONFIRMED and
PENDING bookings. A confirm or a cancel is retried the same way, and on a 409 with Retry-After
(the booking is still PENDING); each booking's plan and the answers its client had are kept for
the check."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import MetaData, func, select

from tests.e2e.devprocess import DevProcess
from ticketing.booking.tables import bookings
from ticketing.inventory.tables import events, reservations
from ticketing.order.tables import inbox as order_inbox
from ticketing.order.tables import orders
from ticketing.shared.event_table import event_store_table

FULL = os.environ.get("TICKETING_CHAOS_SCALE") == "full"
HOLD_SECONDS = 3  # the fault scenarios' holds: those left alone expire mid-run
TAKING = frozenset({"HELD", "CONFIRMED"})  # a settled booking whose seats are taken
GIVEN_BACK = frozenset({"EXPIRED", "CANCELLED"})  # reserved once, released since
MOVING = ("PENDING", "CANCELLING")  # a saga still owes these bookings a step
BOOKINGS = "/api/v1/bookings"


def scaled(short: float, full: float) -> float:
    """Durations of the short suite (every test run) and of ``make chaos``."""
    return full if FULL else short


@dataclass
class Plan:
    """What the client meant one booking of the mixed load to end as, and what it was told."""

    kind: str
    hold: bool
    meant: str
    confirm: int | None = None  # the confirm's answer: 200 or 409
    cancel: int | None = None  # the cancel's answer: 202 or 409
    cancelled_while: str | None = None  # the booking's status in the cancel's 202

    def allowed(self) -> frozenset[str]:
        """The statuses the booking may end in, given the answers its client had."""
        if self.cancel == 202:
            # A cancel while PENDING is applied once the saga answers; a rejection needs none.
            late = self.cancelled_while == "PENDING"
            return frozenset({"CANCELLED", "REJECTED"} if late else {"CANCELLED"})
        if self.cancel == 409 or self.confirm == 409:
            return frozenset({"EXPIRED", "REJECTED"})  # the hold ran out, or never got seats
        if self.confirm == 200:
            return frozenset({"CONFIRMED"})
        if self.hold:
            return frozenset({"HELD", "EXPIRED", "REJECTED"})
        return frozenset({"CONFIRMED", "REJECTED"})


@dataclass
class Load:
    accepted: dict[str, str] = field(default_factory=dict)  # booking id -> event id
    refused: Counter[int] = field(default_factory=Counter)
    gave_up: int = 0
    retries: int = 0  # after a failure: no answer, 5xx or 429
    waits: int = 0  # after a 409 with Retry-After: the booking or its key was still busy
    plans: dict[str, Plan] = field(default_factory=dict)  # the mixed load's, by booking id
    unexpected: list[str] = field(default_factory=list)  # answers a careful client cannot take
    unanswered: list[str] = field(default_factory=list)  # the requests given up on


@dataclass
class Sale:
    events: dict[str, int]  # event id -> capacity
    customers: list[str]


async def prepare_sale(
    api: httpx.AsyncClient, events_count: int, capacity: int, customers: int = 4
) -> Sale:
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

    async def customer() -> str:
        answer = await api.post(
            "/api/v1/customers",
            json={"name": "C", "email": f"c.{uuid.uuid4().hex[:12]}@example.com"},
        )
        assert answer.status_code == 201, answer.text
        customer_id: str = answer.json()["id"]
        return customer_id

    made: list[str] = []
    for start in range(0, customers, 100):
        made += await asyncio.gather(*(customer() for _ in range(min(100, customers - start))))
    return Sale(created, made)


def worth_retrying(response: httpx.Response | None) -> bool:
    return (
        response is None
        or response.status_code >= 500
        or response.status_code == 429
        or "retry-after" in response.headers
    )


async def careful(
    apis: Sequence[httpx.AsyncClient],
    first: int,
    load: Load,
    method: str,
    path: str,
    **kwargs: Any,
) -> httpx.Response | None:
    """``method path`` until it has an answer not worth retrying, each attempt through the next
    of ``apis``; None (counted as given up) when none came within two minutes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    response: httpx.Response | None = None
    for attempt in itertools.count(first):
        if loop.time() >= deadline:
            break
        try:
            response = await apis[attempt % len(apis)].request(method, path, **kwargs)
        except httpx.HTTPError:
            response = None
        if not worth_retrying(response):
            return response
        if response is not None and response.status_code == 409:
            load.waits += 1
        else:
            load.retries += 1
        told = response.headers.get("retry-after", "") if response is not None else ""
        await asyncio.sleep(min(float(told), 1.0) if told.isdigit() else 0.3)
    load.gave_up += 1
    last = "no answer" if response is None else f"{response.status_code} {response.text[:200]}"
    load.unanswered.append(f"{method} {path}, last: {last}")
    return None


async def book_once(
    apis: Sequence[httpx.AsyncClient], first: int, body: dict[str, Any], load: Load
) -> str | None:
    """Request a booking; its id once accepted (None: refused, or no answer)."""
    key = str(uuid.uuid4())
    response = await careful(
        apis, first, load, "POST", BOOKINGS, json=body, headers={"Idempotency-Key": key}
    )
    if response is None:
        return None
    if response.status_code == 202:
        booking_id: str = response.json()["id"]
        load.accepted[booking_id] = body["event_id"]
        return booking_id
    load.refused[response.status_code] += 1
    return None


async def settled(
    apis: Sequence[httpx.AsyncClient], first: int, booking_id: str, load: Load
) -> str | None:
    """The booking's status once it is neither PENDING nor CANCELLING, by long-polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while loop.time() < deadline:
        response = await careful(
            apis, first, load, "GET", f"{BOOKINGS}/{booking_id}", params={"wait": 5}, timeout=20
        )
        if response is None:
            return None
        if response.status_code != 200:
            load.unexpected.append(f"GET {booking_id}: {response.status_code} {response.text}")
            return None
        status: str = response.json()["status"]
        if status not in MOVING:
            return status
    load.gave_up += 1
    load.unanswered.append(f"GET {booking_id}: still PENDING or CANCELLING")
    return None


async def confirm(
    apis: Sequence[httpx.AsyncClient], first: int, booking_id: str, plan: Plan, load: Load
) -> None:
    response = await careful(apis, first, load, "POST", f"{BOOKINGS}/{booking_id}/confirm")
    if response is None:
        return
    if response.status_code in (200, 409):
        plan.confirm = response.status_code
    else:
        load.unexpected.append(f"confirm {booking_id}: {response.status_code} {response.text}")


async def cancel(
    apis: Sequence[httpx.AsyncClient], first: int, booking_id: str, plan: Plan, load: Load
) -> None:
    response = await careful(apis, first, load, "POST", f"{BOOKINGS}/{booking_id}/cancel")
    if response is None:
        return
    if response.status_code == 202:
        plan.cancel, plan.cancelled_while = 202, response.json()["status"]
    elif response.status_code == 409:
        plan.cancel = 409
    else:
        load.unexpected.append(f"cancel {booking_id}: {response.status_code} {response.text}")


# The mixed load's bookings, in turn: what each client does (kind), whether it holds the
# seats, and what it means the booking to end as.
MIX: tuple[tuple[str, bool, str], ...] = (
    ("plain", False, "CONFIRMED"),
    ("hold_confirm", True, "CONFIRMED"),
    ("hold_expire", True, "EXPIRED"),
    ("cancel_held", True, "CANCELLED"),
    ("cancel_confirmed", False, "CANCELLED"),
    ("cancel_pending", False, "CANCELLED"),
    ("cancel_pending_hold", True, "CANCELLED"),
    ("hold_confirm_cancel", True, "CANCELLED"),
)


async def lifecycle_once(
    apis: Sequence[httpx.AsyncClient], index: int, body: dict[str, Any], plan: Plan, load: Load
) -> None:
    """One booking of the mixed load, walked through its ``plan``."""
    booking_id = await book_once(apis, index, body, load)
    if booking_id is None:
        return
    load.plans[booking_id] = plan
    if plan.kind in ("cancel_pending", "cancel_pending_hold"):
        await cancel(apis, index, booking_id, plan, load)
    elif plan.kind in ("hold_confirm", "hold_confirm_cancel"):
        await confirm(apis, index, booking_id, plan, load)
        if plan.kind == "hold_confirm_cancel" and plan.confirm == 200:
            await cancel(apis, index, booking_id, plan, load)
    elif plan.kind in ("cancel_held", "cancel_confirmed") and (
        await settled(apis, index, booking_id, load) in TAKING
    ):
        await cancel(apis, index, booking_id, plan, load)


async def steady_load(
    apis: Sequence[httpx.AsyncClient],
    sale: Sale,
    *,
    rate: float,
    seconds: float,
    load: Load | None = None,
    mixed: bool = False,
) -> Load:
    """``rate`` booking requests a second for ``seconds``, each seen through to an answer, sent
    in turn through ``apis`` (one client per gateway replica); ``mixed``: each walked through
    the next plan of :data:`MIX` rather than left as a plain booking."""
    load = Load() if load is None else load
    event_ids = list(sale.events)
    tasks: list[asyncio.Task[Any]] = []
    for index in range(int(rate * seconds)):
        body: dict[str, Any] = {
            "customer_id": sale.customers[index % len(sale.customers)],
            "event_id": event_ids[index % len(event_ids)],
            "ticket_count": 1 + index % 3,
        }
        if mixed:
            kind, hold, meant = MIX[index % len(MIX)]
            if hold:
                body["hold"] = True
            walk = lifecycle_once(apis, index, body, Plan(kind, hold, meant), load)
            tasks.append(asyncio.create_task(walk))
        else:
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


async def unsettled(dev: DevProcess, booking_ids: list[uuid.UUID]) -> dict[str, int]:
    """What the sagas still owe ``booking_ids``: bookings PENDING or CANCELLING, holds about to
    expire, expired holds whose seats are not back at inventory and order, unpublished events."""
    soon = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=30)
    async with dev.engines["booking"].connect() as conn:
        rows = (
            await conn.execute(
                select(bookings.c.id, bookings.c.status, bookings.c.expires_at).where(
                    bookings.c.id.in_(booking_ids)
                )
            )
        ).all()
    expired = [row.id for row in rows if row.status == "EXPIRED"]
    async with dev.engines["inventory"].connect() as conn:
        held_at_inventory = await conn.scalar(
            select(func.count())
            .select_from(reservations)
            .where(reservations.c.booking_id.in_(expired), reservations.c.released_at.is_(None))
        )
    async with dev.engines["order"].connect() as conn:
        confirmed_at_order = await conn.scalar(
            select(func.count())
            .select_from(orders)
            .where(orders.c.booking_id.in_(expired), orders.c.status != "RELEASED")
        )
    owed = {
        "PENDING or CANCELLING": sum(row.status in MOVING for row in rows),
        "HELD and about to expire": sum(
            row.status == "HELD" and row.expires_at is not None and row.expires_at < soon
            for row in rows
        ),
        "EXPIRED, seats still reserved at inventory": int(held_at_inventory or 0),
        "EXPIRED, order not RELEASED": int(confirmed_at_order or 0),
    }
    owed.update({f"{s} outbox": n for s, n in (await outbox_backlog(dev)).items()})
    return {what: count for what, count in owed.items() if count}


async def until_quiet(dev: DevProcess, booking_ids: list[uuid.UUID], settle: float) -> None:
    """Until every saga step the bookings started is done (AssertionError after ``settle`` s)."""
    deadline = asyncio.get_running_loop().time() + settle
    while owed := await unsettled(dev, booking_ids):
        if asyncio.get_running_loop().time() > deadline:
            # Say what was stuck where, for the next person to read this failure.
            raise AssertionError(
                f"after {settle} s, of {len(booking_ids)} bookings: {owed}; the stack's log "
                "ends with:\n" + dev.log_path.read_text(errors="replace")[-4000:]
            )
        await asyncio.sleep(0.5)


async def story(dev: DevProcess, booking_id: uuid.UUID) -> str:
    """What each service recorded of one booking, for a failure's message."""
    told = []
    for service in ("booking", "order"):
        store = event_store_table(MetaData())
        async with dev.engines[service].connect() as conn:
            kinds = (
                await conn.scalars(
                    select(store.c.event_type)
                    .where(store.c.stream_id == booking_id)
                    .order_by(store.c.version)
                )
            ).all()
        told.append(f"{service}: {', '.join(kinds)}")
    async with dev.engines["inventory"].connect() as conn:
        row = (
            await conn.execute(select(reservations).where(reservations.c.booking_id == booking_id))
        ).first()
    told.append(f"inventory: {None if row is None else dict(row._mapping)}")
    return f"booking {booking_id}: " + "; ".join(told)


async def released_per_booking(dev: DevProcess, service: str, event_ids: set[str]) -> Counter[str]:
    """How often each booking's seats were released, by inventory's ``SeatsReleased`` events or
    order's ``OrderReleased`` events (of the events ``event_ids``)."""
    store = event_store_table(MetaData())
    kind = {"inventory": "SeatsReleased", "order": "OrderReleased"}[service]
    async with dev.engines[service].connect() as conn:
        payloads = (
            await conn.scalars(select(store.c.payload).where(store.c.event_type == kind))
        ).all()
    releases = [json.loads(payload) for payload in payloads]
    return Counter(r["booking_id"] for r in releases if r["event_id"] in event_ids)


async def check_consistency(
    dev: DevProcess, load: Load, sale: Sale, settle: float = 120
) -> dict[str, int]:
    """Once the sagas are quiet: every accepted booking settled, once; the seats taken at each
    event are those of its HELD and CONFIRMED bookings; the seats of every EXPIRED and CANCELLED
    booking were released exactly once; order agrees; each booking of the mixed load ended as
    the answers its client had allow; the projections agree with the events."""
    assert not load.unexpected, f"answers no careful client can take: {load.unexpected[:10]}"
    assert load.accepted, "the load was not accepted at all"
    booking_ids = [uuid.UUID(b) for b in load.accepted]
    if load.gave_up:
        raise AssertionError(
            f"{load.gave_up} requests never got a final answer in two minutes, e.g. "
            f"{load.unanswered[:5]}; the sagas still owe: {await unsettled(dev, booking_ids)}"
        )
    await until_quiet(dev, booking_ids, settle)
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
    assert set(statuses) <= TAKING | GIVEN_BACK | {"REJECTED"}, statuses
    status = {row.id: row.status for row in rows}
    taking = {row.id: row for row in rows if row.status in TAKING}
    given_back = {row.id for row in rows if row.status in GIVEN_BACK}

    async with dev.engines["inventory"].connect() as conn:
        capacity = {
            row.id: (row.total_capacity, row.left_capacity)
            for row in await conn.execute(
                select(events.c.id, events.c.total_capacity, events.c.left_capacity).where(
                    events.c.id.in_(event_ids)
                )
            )
        }
        reserved = (
            await conn.execute(
                select(
                    reservations.c.booking_id,
                    reservations.c.ticket_count,
                    reservations.c.released_at,
                    reservations.c.release_reason,
                ).where(reservations.c.event_id.in_(event_ids), reservations.c.status == "reserved")
            )
        ).all()
    for event_id, (total, left) in capacity.items():
        held = sum(r.ticket_count for r in taking.values() if r.event_id == event_id)
        taken = total - left
        assert held == taken, f"event {event_id}: {held} seats held or confirmed, {taken} taken"
    holding = {r.booking_id: r.ticket_count for r in reserved if r.released_at is None}
    assert holding == {i: r.ticket_count for i, r in taking.items()}, "reserved != HELD+CONFIRMED"
    released = {r.booking_id: r.release_reason for r in reserved if r.released_at is not None}
    assert released == {i: status[i].lower() for i in given_back}, "released != EXPIRED+CANCELLED"
    # No seat released twice: one release per booking at inventory and at order.
    names = set(sale.events)
    for service in ("inventory", "order"):
        releases = await released_per_booking(dev, service, names)
        twice = [b for b, n in releases.items() if n > 1]
        assert not twice, f"{service} released these bookings' seats twice: {twice}"
        assert {uuid.UUID(b) for b in releases} == given_back, f"{service}'s releases"

    async with dev.engines["order"].connect() as conn:
        order_rows = (
            await conn.execute(
                select(orders.c.booking_id, orders.c.status).where(orders.c.event_id.in_(event_ids))
            )
        ).all()
        applied = await conn.scalar(select(func.count()).select_from(order_inbox))
    assert len(order_rows) == len({row.booking_id for row in order_rows})  # one order per booking
    order_status = {row.booking_id: row.status for row in order_rows}
    assert {b for b, s in order_status.items() if s == "CONFIRMED"} == set(taking)
    assert {b for b, s in order_status.items() if s == "RELEASED"} == given_back
    assert {b for b, s in order_status.items() if s == "REJECTED"} == {
        b for b, s in status.items() if s == "REJECTED"
    }
    assert int(applied or 0) >= len(order_rows)

    # Each booking of the mixed load ended as its client's answers allow.
    astray = [
        (uuid.UUID(b), plan)
        for b, plan in load.plans.items()
        if status[uuid.UUID(b)] not in plan.allowed()
    ]
    if astray:
        told = [f"{plan} ended {status[b]}; {await story(dev, b)}" for b, plan in astray[:5]]
        raise AssertionError(f"{len(astray)} bookings ended astray:\n" + "\n".join(told))

    # The state tables are what the events fold into (the CLI exits 1, naming every row, if not).
    verified = await dev.run_cli("projections", "verify")
    for service in ("inventory", "booking", "order"):
        assert f"{service}: agree" in verified
    summary = {s.lower(): statuses[s] for s in TAKING | GIVEN_BACK | {"REJECTED"}}
    summary.update(accepted=len(booking_ids), retries=load.retries)
    for b, plan in load.plans.items():
        if status[uuid.UUID(b)] == plan.meant:
            summary[plan.kind] = summary.get(plan.kind, 0) + 1  # ended as meant
    return summary


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
