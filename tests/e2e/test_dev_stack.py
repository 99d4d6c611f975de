"""The whole system started the way the README says (``ticketing dev``), used through the
gateway with a real token, then stopped with Ctrl-C, leaving no process behind."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import uuid
from pathlib import Path

import httpx

from tests.harness import drop_databases, free_port
from ticketing.shared.settings import Settings


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


async def run_cli(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ticketing", *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return out.decode()


async def test_dev_stack_books_through_the_gateway_and_stops_cleanly(
    base_settings: Settings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(base_settings, db_prefix=base_settings.db_prefix + "e2e_")
    ports = {name: free_port() for name in ("inventory", "booking", "order", "gateway")}
    kafka_port, idp_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TICKETING_KAFKA_BOOTSTRAP", "TICKETING_OIDC_ISSUER")
    }
    env.update({f"TICKETING_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env["TICKETING_DB_PREFIX"] = settings.db_prefix
    env["TICKETING_KAFKA_SESSION_TIMEOUT_MS"] = "2000"
    env["TICKETING_KAFKA_HEARTBEAT_INTERVAL_MS"] = "300"
    log_path = tmp_path / "dev.log"
    log_file = log_path.open("wb")
    dev = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ticketing",
        "dev",
        "--kafka-port",
        str(kafka_port),
        "--idp-port",
        str(idp_port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=log_file,
    )
    assert dev.stdout is not None
    try:
        async with asyncio.timeout(180):
            while b"ticketing is up." not in await dev.stdout.readline():
                assert dev.returncode is None, "ticketing dev exited before it was up"
        issuer = f"http://127.0.0.1:{idp_port}/realms/ticketing"
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        async with httpx.AsyncClient(timeout=30) as http:
            token = (
                await http.post(
                    f"{issuer}/protocol/openid-connect/token",
                    data={"grant_type": "client_credentials"},
                    auth=("ticketing-admin", "ticketing-admin-secret"),
                )
            ).json()["access_token"]
            api = httpx.AsyncClient(
                base_url=gateway, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            async with api:
                venue = (
                    await api.post(
                        "/api/v1/venues",
                        json={"name": "E2E Hall", "address": "1 Test St", "total_capacity": 10},
                    )
                ).json()
                event = (
                    await api.post(
                        "/api/v1/events",
                        json={
                            "name": "E2E",
                            "venue_id": venue["id"],
                            "total_capacity": 10,
                            "ticket_price": "5.00",
                        },
                    )
                ).json()
                customer = (
                    await api.post(
                        "/api/v1/customers",
                        json={"name": "E", "email": f"e.{uuid.uuid4().hex[:8]}@example.com"},
                    )
                ).json()
                accepted = await api.post(
                    "/api/v1/bookings",
                    json={
                        "customer_id": customer["id"],
                        "event_id": event["id"],
                        "ticket_count": 3,
                    },
                )
                assert accepted.status_code == 202, accepted.text
                for _ in range(600):
                    booking = (await api.get(f"/api/v1/bookings/{accepted.json()['id']}")).json()
                    if booking["status"] != "PENDING":
                        break
                    await asyncio.sleep(0.05)
                assert booking["status"] == "CONFIRMED"

                seeded = await run_cli(env, "seed", "--demo")
                again = await run_cli(env, "seed", "--demo")
                assert "0 record(s) created" not in seeded
                assert "0 record(s) created" in again
                demo_event = next(
                    line.split()[1] for line in again.splitlines() if "Flash Sale Night" in line
                )
                shown = (await api.get(f"/api/v1/events/{demo_event}")).json()
                assert shown["total_capacity"] == 100

                # A child that dies is logged and restarted.
                booking_pid = child_running(dev.pid, "serve booking")
                assert booking_pid is not None
                os.kill(booking_pid, signal.SIGKILL)
                async with asyncio.timeout(60):
                    while child_running(dev.pid, "serve booking") in (None, booking_pid):
                        await asyncio.sleep(0.2)
                    while True:
                        with contextlib.suppress(httpx.HTTPError):
                            probe = await api.get(f"/api/v1/bookings/{accepted.json()['id']}")
                            if probe.status_code == 200:
                                break
                        await asyncio.sleep(0.2)
                assert b"child died, restarting" in log_path.read_bytes()

        processes = descendants(dev.pid)
        assert len(processes) >= 6  # kafka, the OIDC server and four services
        dev.send_signal(signal.SIGINT)
        await asyncio.wait_for(dev.wait(), 60)
        assert dev.returncode == 0
        await asyncio.sleep(0.5)
        assert not [pid for pid in processes if alive(pid)]
    finally:
        if dev.returncode is None:
            dev.kill()
            await dev.wait()
        log_file.close()
        await drop_databases(settings)


def child_running(parent: int, needle: str) -> int | None:
    """The pid of the process below ``parent`` whose command line holds ``needle``."""
    for pid in descendants(parent):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in command and alive(pid):
            return pid
    return None


async def test_dev_without_a_database_says_what_to_do() -> None:
    env = {**os.environ, "TICKETING_MYSQL_URL": f"mysql+aiomysql://root@127.0.0.1:{free_port()}"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ticketing",
        "dev",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert b"no MySQL/MariaDB answers" in err
    assert b"hint:" in err
