"""The consistency check every fault scenario ends with: once the saga is quiet, every accepted
booking ended as its client's answers allow, every seat is accounted for and released at most
once, and every projection agrees with its events."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import MetaData, func, select

from tests.e2e.careful import GIVEN_BACK, MOVING, TAKING, Load
from tests.e2e.devprocess import DevProcess
from tests.e2e.load import Sale
from ticketing.booking.tables import bookings
from ticketing.inventory.tables import events, reservations
from ticketing.order.tables import inbox as order_inbox
from ticketing.order.tables import orders
from ticketing.shared.store.table import event_store_table


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
