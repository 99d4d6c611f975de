"""``ticketing dev`` as a subprocess on free ports, with its children found through /proc."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import drop_databases
from tests.harness.processes import free_port
from ticketing.booking.tables import bookings
from ticketing.cli.devstack import REPLICA_PORT_STEP
from ticketing.shared.db.engine import create_engine
from ticketing.shared.settings import DATABASE_SERVICES, Settings

SERVICES = ("inventory", "booking", "order", "gateway")


async def pending_bookings(engine: AsyncEngine, booking_ids: list[uuid.UUID] | None = None) -> int:
    """How many of ``booking_ids`` (default: all bookings) are still PENDING."""
    query = select(func.count()).select_from(bookings).where(bookings.c.status == "PENDING")
    if booking_ids is not None:
        query = query.where(bookings.c.id.in_(booking_ids))
    async with engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class DevProcess:
    process: asyncio.subprocess.Process
    env: dict[str, str]
    settings: Settings
    gateway: str
    issuer: str
    log_path: Path
    engines: dict[str, AsyncEngine]
    replicas: int = 1

    def urls(self, service: str) -> list[str]:
        """Where each replica of ``service`` answers."""
        _, port = self.settings.bind(service)  # type: ignore[arg-type]
        return [f"http://127.0.0.1:{port + REPLICA_PORT_STEP * k}" for k in range(self.replicas)]

    def child(self, needle: str) -> int | None:
        """The pid of the running child whose command line holds ``needle``."""
        for pid in descendants(self.process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if needle.encode() in command and alive(pid):
                return pid
        return None

    async def token(
        self, client: str = "ticketing-admin", secret: str = "ticketing-admin-secret"
    ) -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                f"{self.issuer}/protocol/openid-connect/token",
                data={"grant_type": "client_credentials"},
                auth=(client, secret),
            )
        token: str = response.json()["access_token"]
        return token

    async def run_cli(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ticketing",
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, (out.decode() + err.decode())[-3000:]
        return out.decode()

    async def wait_healthy(self, seconds: float = 60) -> None:
        """Until every replica of every service answers ready again."""
        async with httpx.AsyncClient(timeout=2) as http, asyncio.timeout(seconds):
            for url in (u + "/health/ready" for service in SERVICES for u in self.urls(service)):
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(url)).status_code == 200:
                            break
                    await asyncio.sleep(0.2)


def free_replica_port(replicas: int) -> int:
    """A free port whose replicas' ports (``REPLICA_PORT_STEP`` apart) are free too."""
    while True:
        port = free_port()
        others = [port + REPLICA_PORT_STEP * k for k in range(1, replicas)]
        if all(other < 65536 and not port_taken(other) for other in others):
            return port


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@contextlib.asynccontextmanager
async def dev_process(
    base: Settings, log_dir: Path, *, replicas: int = 1, env: Mapping[str, str] | None = None
) -> AsyncIterator[DevProcess]:
    """``ticketing dev --replicas <replicas>`` on free ports and databases of its own, with
    ``env`` as extra settings; stopped and its databases dropped on the way out."""
    settings = dataclasses.replace(
        base,
        db_prefix=base.db_prefix + f"dev{free_port()}_",
        inventory_port=free_replica_port(replicas),
        booking_port=free_replica_port(replicas),
        order_port=free_replica_port(replicas),
        gateway_port=free_replica_port(replicas),
    )
    kafka_port, idp_port = free_port(), free_port()
    env_changes = env or {}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TICKETING_KAFKA_BOOTSTRAP", "TICKETING_OIDC_ISSUER")
    }
    env.update({f"TICKETING_{s.upper()}_PORT": str(settings.bind(s)[1]) for s in SERVICES})  # type: ignore[arg-type]
    env.update(
        TICKETING_DB_PREFIX=settings.db_prefix,
        TICKETING_KAFKA_SESSION_TIMEOUT_MS="2000",
        TICKETING_KAFKA_HEARTBEAT_INTERVAL_MS="300",
        TICKETING_GATEWAY_RATE_LIMIT_PER_SECOND="100000",
        TICKETING_GATEWAY_RATE_LIMIT_BURST="100000",
        **env_changes,
    )
    log_path = log_dir / "dev.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ticketing",
            "dev",
            "--kafka-port",
            str(kafka_port),
            "--idp-port",
            str(idp_port),
            "--replicas",
            str(replicas),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
        )
        assert process.stdout is not None
        engines: dict[str, AsyncEngine] = {}
        try:
            async with asyncio.timeout(180):
                while b"ticketing is up." not in await process.stdout.readline():
                    assert process.returncode is None, log_path.read_text()[-3000:]
            env["TICKETING_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{kafka_port}"
            env["TICKETING_OIDC_ISSUER"] = f"http://127.0.0.1:{idp_port}/realms/ticketing"
            engines = {name: create_engine(settings, name) for name in DATABASE_SERVICES}
            yield DevProcess(
                process,
                env,
                settings,
                gateway=settings.base_url("gateway"),
                issuer=env["TICKETING_OIDC_ISSUER"],
                log_path=log_path,
                engines=engines,
                replicas=replicas,
            )
        finally:
            for engine in engines.values():
                await engine.dispose()
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(process.wait(), 60)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            await drop_databases(settings)
