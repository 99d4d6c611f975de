"""Accept throughput: wrk posts bookings through the gateway as fast as they are answered, read
against the raw-write ceiling measured on both sides of the load."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.client import api, sale
from benchmarks.confirmation import BRIEF, confirmation_latency
from benchmarks.footprint import footprint
from benchmarks.raw import raw_booking_writes
from benchmarks.stack import CoreMeter, cpu_per_booking
from tests.e2e.devprocess import DevProcess, pending_bookings
from ticketing.booking.tables import bookings
from ticketing.booking.tables import metadata as booking_metadata
from ticketing.shared.db.engine import create_engine, ensure_database


def wrk_script(body: str, token: str) -> Path:
    """A wrk script that posts ``body`` and prints its figures as one JSON line at the end."""
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "{token}"\n'
        "done = function(s, latency, r)\n"
        '  io.write(string.format("JSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"status_errors\\":%d,'
        '\\"socket_errors\\":%d,\\"p50_us\\":%d,\\"p95_us\\":%d,\\"p99_us\\":%d}\\n",'
        " s.requests, s.duration, s.errors.status, s.errors.connect + s.errors.read + s.errors.write"
        " + s.errors.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99)))\n"
        "end\n"
    )
    return script


async def accept_throughput(dev: DevProcess, seconds: int) -> dict[str, Any]:
    async with await api(dev) as client:
        customer_id, event_id = await sale(client, 1_000_000)
        token = client.headers["Authorization"]
    body = json.dumps({"customer_id": customer_id, "event_id": event_id, "ticket_count": 1})
    script = wrk_script(body, token)
    wrk = shutil.which("wrk")
    assert wrk, "wrk is needed: apt-get install wrk"
    # One wrk per gateway replica, the connections split between them, as a balancer in front
    # of the replicas would.
    gateways = dev.urls("gateway")
    processes = [
        await asyncio.create_subprocess_exec(
            wrk,
            "-t1",
            f"-c{64 // len(gateways)}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"{gateway}/api/v1/bookings",
            stdout=asyncio.subprocess.PIPE,
        )
        for gateway in gateways
    ]
    peak: dict[str, float] = {}
    meter = CoreMeter(dev)
    while any(process.returncode is None for process in processes):
        for name, value in footprint(dev).items():
            peak[name] = max(peak.get(name, 0.0), value)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 0.5)
    cores = meter.cores()
    runs = []
    for process in processes:
        out = (await process.stdout.read()).decode() if process.stdout else ""
        line = next(line for line in out.splitlines() if line.startswith("JSON "))
        runs.append(json.loads(line[5:]))
    rate = sum(run["requests"] / (run["duration_us"] / 1e6) for run in runs)
    requests = sum(run["requests"] for run in runs)
    status_errors = sum(run["status_errors"] for run in runs)
    accepted = round(rate * (1 - status_errors / max(1, requests)), 1)
    # With several gateways: the slowest replica's percentiles (what the slower half saw).
    measured = {key: max(run[key] for run in runs) for key in ("p50_us", "p95_us", "p99_us")}
    return {
        "concurrency": 64 // len(gateways) * len(gateways),
        "seconds": seconds,
        "gateways": len(gateways),
        "requests": requests,
        "accepted_per_second": accepted,
        "requests_per_second": round(rate, 1),
        "errors": status_errors + sum(run["socket_errors"] for run in runs),
        "p50_ms": measured["p50_us"] / 1000,
        "p95_ms": measured["p95_us"] / 1000,
        "p99_ms": measured["p99_us"] / 1000,
        "rss_under_load_mb": peak,
        "cores_used": cores,
        "cpu_us_per_booking": cpu_per_booking(cores, accepted),
        "accepted_each_second": await accepted_each_second(dev.engines["booking"], event_id),
    }


async def accepted_each_second(engine: AsyncEngine, event_id: str) -> list[int]:
    """How many of the event's bookings were accepted in each whole second from the first one,
    by the bookings' own timestamps: read after the load, so counting costs the run nothing.
    The last, partial second is left out, as it would read as a fall the run never had."""
    of_event = bookings.c.event_id == uuid.UUID(event_id)
    async with engine.connect() as conn:
        first, last = (
            await conn.execute(
                select(func.min(bookings.c.created_at), func.max(bookings.c.created_at)).where(
                    of_event
                )
            )
        ).one()
        if first is None:
            return []
        second = func.floor(
            func.timestampdiff(text("MICROSECOND"), first, bookings.c.created_at) / 1_000_000
        )
        rows = (
            await conn.execute(select(second, func.count()).where(of_event).group_by(second))
        ).all()
    counts = {int(index): int(count) for index, count in rows}
    return [counts.get(index, 0) for index in range(int((last - first).total_seconds()))]


async def drain_saga(dev: DevProcess, limit: float = 600) -> float:
    """Seconds until no booking is PENDING any more (the saga caught up with the load)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if not await pending_bookings(dev.engines["booking"]):
            break
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def raw_write_ceiling(dev: DevProcess) -> float:
    """The raw-write ceiling, measured in a scratch copy of booking's tables: writing into the
    live database would hand the relay and the saga thousands of rows to chew on meanwhile."""
    settings = dataclasses.replace(dev.settings, db_prefix=dev.settings.db_prefix + "ceiling_")
    await ensure_database(settings, "booking")
    engine = create_engine(settings, "booking")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(booking_metadata.create_all)
    finally:
        await engine.dispose()
    return await raw_booking_writes(
        settings, settings.database_name("booking"), concurrency=64, seconds=10
    )


async def accept_scenario(dev: DevProcess, seconds: int, rate: float) -> dict[str, Any]:
    """The accept run between two readings of the ceiling, then the confirmation latency at
    ``rate`` on the stack it has loaded."""
    # The ceiling is measured on both sides of the load, and the ratio taken to their mean:
    # these hosts' speed drifts within minutes, and one reading taken after the load would
    # tie the ratio to whichever way the host had drifted meanwhile.
    before = await raw_write_ceiling(dev)
    accept = await accept_throughput(dev, seconds)
    accept["saga_drain_seconds"] = round(await drain_saga(dev), 1)
    after = await raw_write_ceiling(dev)
    raw = (before + after) / 2
    accept["raw_write_ceiling_readings"] = [round(before, 1), round(after, 1)]
    accept["raw_write_ceiling_per_second"] = round(raw, 1)
    accept["ratio_to_ceiling"] = round(accept["accepted_per_second"] / raw, 3)
    # What a user who load-tested this stack sees next: the stores, tables and the broker's
    # log now hold the accept run's history, unlike the fresh stack of section 2.
    after_load = await confirmation_latency(dev, rate=rate, seconds=20)
    accept["confirmation_after"] = {key: after_load[key] for key in (*BRIEF, "percentiles_ms")}
    return accept
