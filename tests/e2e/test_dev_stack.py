"""The whole system started the way the README says (``ticketing dev``), used through the
gateway with a real token, then stopped with Ctrl-C, leaving no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import httpx

from tests.e2e.devprocess import alive, descendants, dev_process
from tests.harness.broker import group_members, topic_partitions
from tests.harness.processes import free_port
from ticketing.contracts.events import BOOKINGS_TOPIC, ORDERS_TOPIC
from ticketing.shared.settings import Settings


async def test_dev_stack_books_through_the_gateway_and_stops_cleanly(
    base_settings: Settings, tmp_path: Path
) -> None:
    async with dev_process(base_settings, tmp_path) as dev:
        # "ticketing is up" only once booking's and order's consumers have joined their groups.
        bootstrap = dev.env["TICKETING_KAFKA_BOOTSTRAP"]
        for group in ("booking-service", "order-service"):
            assert await group_members(bootstrap, group) == 1, f"{group} has not joined"
        partitions = await topic_partitions(bootstrap, BOOKINGS_TOPIC, ORDERS_TOPIC)
        assert partitions == {BOOKINGS_TOPIC: 6, ORDERS_TOPIC: 6}  # TICKETING_KAFKA_PARTITIONS
        headers = {"Authorization": f"Bearer {await dev.token()}"}
        async with httpx.AsyncClient(base_url=dev.gateway, headers=headers, timeout=30) as api:
            venue = await api.post(
                "/api/v1/venues", json={"name": "E2E", "address": "1 Test St", "total_capacity": 10}
            )
            event = await api.post(
                "/api/v1/events",
                json={
                    "name": "E2E",
                    "venue_id": venue.json()["id"],
                    "total_capacity": 10,
                    "ticket_price": "5.00",
                },
            )
            customer = await api.post(
                "/api/v1/customers",
                json={"name": "E", "email": f"e.{uuid.uuid4().hex[:8]}@example.com"},
            )
            accepted = await api.post(
                "/api/v1/bookings",
                json={
                    "customer_id": customer.json()["id"],
                    "event_id": event.json()["id"],
                    "ticket_count": 3,
                },
            )
            assert accepted.status_code == 202, accepted.text
            booking_path = f"/api/v1/bookings/{accepted.json()['id']}"
            for _ in range(600):
                booking = (await api.get(booking_path)).json()
                if booking["status"] != "PENDING":
                    break
                await asyncio.sleep(0.05)
            assert booking["status"] == "CONFIRMED"

            seeded = await dev.run_cli("seed", "--demo")
            again = await dev.run_cli("seed", "--demo")
            assert "0 record(s) created" not in seeded
            assert "0 record(s) created" in again
            demo_event = next(
                line.split()[1] for line in again.splitlines() if "Flash Sale Night" in line
            )
            assert (await api.get(f"/api/v1/events/{demo_event}")).json()["total_capacity"] == 100

            # A child that dies is logged and restarted.
            booking_pid = dev.child("serve booking")
            assert booking_pid is not None
            os.kill(booking_pid, signal.SIGKILL)
            async with asyncio.timeout(60):
                while dev.child("serve booking") in (None, booking_pid):
                    await asyncio.sleep(0.2)
            await dev.wait_healthy()
            assert (await api.get(booking_path)).json()["status"] == "CONFIRMED"
            assert b"child died, restarting" in dev.log_path.read_bytes()

        processes = descendants(dev.process.pid)
        assert len(processes) >= 6  # kafka, the OIDC server and four services
        dev.process.send_signal(signal.SIGINT)
        await asyncio.wait_for(dev.process.wait(), 60)
        assert dev.process.returncode == 0
        await asyncio.sleep(0.5)
        assert not [pid for pid in processes if alive(pid)]


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


async def test_dev_with_two_replicas_runs_two_of_each_and_spreads_the_calls(
    base_settings: Settings, tmp_path: Path
) -> None:
    async with dev_process(base_settings, tmp_path, replicas=2) as dev:
        bootstrap = dev.env["TICKETING_KAFKA_BOOTSTRAP"]
        for group in ("booking-service", "order-service"):
            assert await group_members(bootstrap, group) == 2, f"{group}: not both replicas"
        await dev.wait_healthy()  # every replica of every service answers ready
        headers = {"Authorization": f"Bearer {await dev.token()}"}
        second = dev.urls("gateway")[1]
        async with httpx.AsyncClient(base_url=second, headers=headers, timeout=30) as api:
            venue = await api.post(
                "/api/v1/venues", json={"name": "R", "address": "2 Test St", "total_capacity": 10}
            )
            for _ in range(3):
                event = await api.post(
                    "/api/v1/events",
                    json={
                        "name": "R",
                        "venue_id": venue.json()["id"],
                        "total_capacity": 10,
                        "ticket_price": "5.00",
                    },
                )
            ready = (await api.get("/health/ready")).json()
            assert set(ready["breakers"]["inventory"]) == set(dev.urls("inventory"))
            assert set(ready["breakers"]["booking"]) == set(dev.urls("booking"))
            # The gateway's writes went to both inventory replicas.
            for url in dev.urls("inventory"):
                metrics = (await api.get(url + "/metrics")).text
                assert 'method="POST"' in metrics, url
            leaders = [
                (await api.get(url + "/health/ready")).json()["relay"]
                for url in dev.urls("booking")
            ]
            assert sorted(leaders) == ["leader", "standby"]  # one relay publishes at a time
            customer = await api.post(
                "/api/v1/customers",
                json={"name": "R", "email": f"r.{uuid.uuid4().hex[:8]}@example.com"},
            )
            accepted = await api.post(
                "/api/v1/bookings",
                json={
                    "customer_id": customer.json()["id"],
                    "event_id": event.json()["id"],
                    "ticket_count": 2,
                },
            )
            assert accepted.status_code == 202, accepted.text
            for _ in range(600):
                booking = (await api.get(f"/api/v1/bookings/{accepted.json()['id']}")).json()
                if booking["status"] != "PENDING":
                    break
                await asyncio.sleep(0.05)
            assert booking["status"] == "CONFIRMED"
