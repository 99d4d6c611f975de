"""Confirmation latency: bookings at a fixed rate, each timed from its 202 to CONFIRMED, with the
saga's legs from the timestamps every service writes."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from sqlalchemy import bindparam, func, select, text

from benchmarks.client import LeanClient, api, at_fixed_rate, sale
from benchmarks.disk import FsyncProbe
from benchmarks.stack import CoreMeter, cpu_per_booking, percentile
from tests.e2e.devprocess import DevProcess, pending_bookings
from ticketing.booking.tables import bookings
from ticketing.shared.http.client import TRANSPORT_ERRORS

# The figures of a latency run that the report shows beside the main one.
BRIEF = ("rate_per_second", "bookings", "p50_ms", "p99_ms")


async def confirmation_latency(dev: DevProcess, rate: float, seconds: float) -> dict[str, Any]:
    async with await api(dev) as client:
        customer_id, event_id = await sale(client, 1_000_000)
        token = str(client.headers["Authorization"])
    body = json.dumps({"customer_id": customer_id, "event_id": event_id, "ticket_count": 1})
    lean = LeanClient(dev.gateway, token, connections=200)
    ids: list[str] = []
    errors = 0

    async def one(_: int) -> None:
        nonlocal errors
        try:
            status, content = await lean.post("/api/v1/bookings", body.encode())
        except TRANSPORT_ERRORS:
            errors += 1
            return
        if status == 202:
            ids.append(json.loads(content)["id"])
        else:
            errors += 1

    meter = CoreMeter(dev)
    await at_fixed_rate(rate, seconds, one, lean)
    cores = meter.cores()
    engine = dev.engines["booking"]
    booking_ids = [uuid.UUID(i) for i in ids]
    for _ in range(600):
        if await pending_bookings(engine, booking_ids) == 0:
            break
        await asyncio.sleep(0.1)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                func.timestampdiff(
                    text("MICROSECOND"), bookings.c.created_at, bookings.c.updated_at
                )
            ).where(bookings.c.id.in_(booking_ids), bookings.c.status == "CONFIRMED")
        )
        latencies = [value / 1000 for (value,) in rows]
    return {
        "rate_per_second": rate,
        "stages_ms": await latency_stages(dev, booking_ids),
        "bookings": len(ids),
        "errors": errors,
        "confirmed": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies, default=0.0), 1),
        "cores_used": cores,
        "percentiles_ms": distribution(latencies),
    }


def distribution(latencies: list[float]) -> list[float]:
    """The latency at each percentile from 0 to 100: the whole distribution, drawn as a curve,
    in a hundred and one figures rather than one per booking."""
    return [round(percentile(latencies, k / 100), 1) for k in range(101)]


STAGES = {
    "booking committed, relayed to the broker": ("b.created_at", "bo.published_at"),
    "delivered to order, capacity reserved at inventory": ("bo.published_at", "r.created_at"),
    "order recorded with its outcome": ("r.created_at", "oo.recorded_at"),
    "outcome relayed to the broker": ("oo.recorded_at", "oo.published_at"),
    "delivered to booking, CONFIRMED": ("oo.published_at", "b.updated_at"),
}


async def confirmed_saga(dev: DevProcess) -> str:
    """``FROM ... WHERE`` over every confirmed booking joined with the rows each leg of its saga
    wrote (aliases ``b``, ``bo``, ``r``, ``oo`` as in :data:`STAGES`: the booking, its
    BookingRequested event, its reservation, its order's outcome event); callers add
    conditions. A stack of the code from before the event stores (an A/B run against it) has
    outbox tables instead, joined the way that code wrote them."""
    name = dev.settings.database_name
    async with dev.engines["booking"].connect() as conn:
        outboxes = await conn.scalar(
            text(
                "SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_schema = :schema AND table_name = 'outbox'"
            ),
            {"schema": name("booking")},
        )
    if outboxes:
        booking_event = f"{name('booking')}.outbox bo ON bo.aggregate_id = b.id"
        order_event = (
            f"(SELECT aggregate_id, created_at AS recorded_at, published_at "
            f"FROM {name('order')}.outbox) oo ON oo.aggregate_id = b.id"
        )
    else:
        booking_event = (
            f"{name('booking')}.event_store bo ON bo.stream_id = b.id AND bo.version = 1"
        )
        order_event = f"{name('order')}.event_store oo ON oo.stream_id = b.id"
    return (
        f"FROM {name('booking')}.bookings b JOIN {booking_event} "
        f"JOIN {name('inventory')}.reservations r ON r.booking_id = b.id "
        f"JOIN {order_event} WHERE b.status = 'CONFIRMED'"
    )


async def latency_stages(dev: DevProcess, booking_ids: list[uuid.UUID]) -> dict[str, float]:
    """Mean time of each leg from the 202 to CONFIRMED, from the timestamps every service
    writes (one MariaDB server, so one clock). "Relayed" is when the relay marked the row,
    after the broker acknowledged it, so a consumer may see a message slightly before it."""
    averages = ", ".join(
        f"AVG(TIMESTAMPDIFF(MICROSECOND, {start}, {end})) / 1000" for start, end in STAGES.values()
    )
    query = text(f"SELECT {averages} {await confirmed_saga(dev)} AND b.id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    async with dev.engines["booking"].connect() as conn:
        row = (await conn.execute(query, {"ids": [str(i) for i in booking_ids]})).one()
    return {stage: round(float(value or 0), 1) for stage, value in zip(STAGES, row, strict=True)}


async def idle_then_alone(dev: DevProcess) -> tuple[dict[str, float], dict[str, Any]]:
    """The cores the idle stack uses over 5 s, then the latency of a booking alone (one every
    200 ms for 10 s): the references a run at a fixed rate is read against."""
    idle = CoreMeter(dev)
    await asyncio.sleep(5)
    idle_cores = idle.cores()
    return idle_cores, await confirmation_latency(dev, rate=5, seconds=10)


async def confirmation_scenario(dev: DevProcess, rate: float) -> dict[str, Any]:
    """``rate`` bookings/s for 20 s with the disk's flushes timed beside them, read against the
    same path with nothing else going on (a booking every 200 ms) on the same stack."""
    idle_cores, alone = await idle_then_alone(dev)
    async with dev.engines["booking"].connect() as conn:
        datadir = str(await conn.scalar(text("SELECT @@datadir")))
    with FsyncProbe(datadir) as disk:
        confirmation = await confirmation_latency(dev, rate=rate, seconds=20)
    confirmation["disk_fsync"] = disk.summary()
    confirmation["alone"] = {key: alone[key] for key in BRIEF}
    confirmation["idle_cores_used"] = idle_cores
    confirmation["cpu_us_per_booking"] = cpu_per_booking(confirmation["cores_used"], rate)
    return confirmation
