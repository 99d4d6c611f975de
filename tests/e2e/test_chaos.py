"""The resilience suite: faults injected into ``ticketing dev``'s processes under steady load,
each scenario ending with the consistency check. `make chaos` runs the same scenarios longer
(TICKETING_CHAOS_SCALE=full)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.chaos import Passage, check_consistency, prepare_sale, scaled, steady_load
from tests.e2e.devprocess import DevProcess, dev_process
from tests.harness import restart_local_mariadb
from ticketing.shared.settings import Settings

RATE = 20.0


@pytest.fixture
async def dev(base_settings: Settings, tmp_path: Path) -> AsyncIterator[DevProcess]:
    async with dev_process(
        base_settings, tmp_path, env={"TICKETING_IDEMPOTENCY_INFLIGHT_SECONDS": "3"}
    ) as running:
        yield running


@contextlib.asynccontextmanager
async def gateway_clients(dev: DevProcess) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per gateway replica."""
    headers = {"Authorization": f"Bearer {await dev.token()}"}
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=headers, timeout=10)
            )
            for url in dev.urls("gateway")
        ]


async def under_load(
    dev: DevProcess,
    seconds: float,
    *faults: Coroutine[Any, Any, None],
    capacity: int | None = None,
    events_count: int = 2,
    before_check: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, int]:
    """Steady booking load with ``faults`` running beside it, then the consistency check.

    Without a ``capacity``, every event has seats for every request the load could send it (up
    to three tickets each), so a fault must never show as a rejection.
    """
    if capacity is None:
        capacity = math.ceil(RATE * seconds * 3 / events_count) + 10
    async with gateway_clients(dev) as apis:
        sale = await prepare_sale(apis[0], events_count=events_count, capacity=capacity)
        load, *_ = await asyncio.gather(
            steady_load(apis, sale, rate=RATE, seconds=seconds), *faults
        )
    await dev.wait_healthy()
    if before_check is not None:
        await before_check()
    return await check_consistency(dev, load, sale)


async def at(delay: float, action: object) -> None:
    await asyncio.sleep(delay)
    await action  # type: ignore[misc]


async def kill(dev: DevProcess, needle: str) -> None:
    pid = dev.child(needle)
    assert pid is not None, needle
    os.kill(pid, signal.SIGKILL)


async def pause(dev: DevProcess, needle: str, seconds: float) -> None:
    pid = dev.child(needle)
    assert pid is not None, needle
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_kill_9_of_every_service_mid_load_loses_and_doubles_nothing(dev: DevProcess) -> None:
    seconds = scaled(12, 60)
    step = seconds / 5
    summary = await under_load(
        dev,
        seconds,
        at(step * 1, kill(dev, "serve order")),
        at(step * 2, kill(dev, "serve booking")),  # its outbox relay dies with it
        at(step * 3, kill(dev, "serve gateway")),
        at(step * 4, kill(dev, "serve inventory")),
        capacity=40,
        events_count=3,
    )
    assert summary["confirmed"] > 0
    assert summary["rejected"] > 0  # the events sold out: both outcomes were exercised
    assert dev.log_path.read_bytes().count(b"child died, restarting") >= 4


async def test_a_paused_broker_delays_but_loses_nothing(dev: DevProcess) -> None:
    summary = await under_load(dev, scaled(10, 40), at(2, pause(dev, "tansu", scaled(5, 20))))
    assert summary["confirmed"] == summary["accepted"]


async def test_a_broker_restarted_empty_is_recovered_by_outbox_replay(dev: DevProcess) -> None:
    seconds = scaled(8, 30)

    async def replay() -> None:
        await asyncio.sleep(3)  # let relays and consumers reconnect to the new broker
        for service in ("booking", "order"):
            out = await dev.run_cli("outbox", "replay", "--service", service, "--since", "1h")
            assert "replayed" in out or "nothing to replay" in out

    # Tansu keeps nothing: topics and offsets are gone after the kill.
    summary = await under_load(
        dev, seconds, at(seconds / 2, kill(dev, "tansu")), before_check=replay
    )
    assert summary["confirmed"] == summary["accepted"]


async def test_inventory_unavailable_bookings_wait_then_settle(dev: DevProcess) -> None:
    summary = await under_load(
        dev, scaled(10, 30), at(2, pause(dev, "serve inventory", scaled(4, 10)))
    )
    assert summary["confirmed"] == summary["accepted"]
    assert summary["retries"] > 0  # clients did see 503s while inventory was away


async def test_a_database_restart_mid_load_loses_nothing(dev: DevProcess) -> None:
    summary = await under_load(
        dev, scaled(10, 30), at(2, restart_local_mariadb(dev.settings, scaled(2, 10)))
    )
    assert summary["confirmed"] == summary["accepted"]
    assert summary["retries"] > 0  # clients did see the outage


async def relay_leader(dev: DevProcess, service: str) -> str:
    """The address of the replica of ``service`` whose relay publishes (waits for one)."""
    async with httpx.AsyncClient(timeout=2) as http, asyncio.timeout(30):
        while True:
            for url in dev.urls(service):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url + "/health/ready")).json().get("relay") == "leader":
                        return url
            await asyncio.sleep(0.2)


async def kill_replica(dev: DevProcess, service: str, url: str) -> None:
    await kill(dev, f"serve {service} --port {url.rsplit(':', 1)[1]}")


async def kill_relay_leader(dev: DevProcess, service: str, took_over: list[float]) -> None:
    """Kill the replica whose relay publishes; time until the other replica publishes."""
    leader = await relay_leader(dev, service)
    await kill_replica(dev, service, leader)
    killed_at = asyncio.get_running_loop().time()
    (other,) = set(dev.urls(service)) - {leader}
    async with httpx.AsyncClient(timeout=2) as http, asyncio.timeout(30):
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if (await http.get(other + "/health/ready")).json().get("relay") == "leader":
                    break
            await asyncio.sleep(0.1)
    took_over.append(asyncio.get_running_loop().time() - killed_at)


async def store_unavailable_count(dev: DevProcess) -> float:
    """How many requests the gateway replicas let through on their own budget while the
    shared rate limit store did not answer."""
    headers = {"Authorization": f"Bearer {await dev.token()}"}
    total = 0.0
    async with httpx.AsyncClient(headers=headers, timeout=5) as http:
        for url in dev.urls("gateway"):
            for line in (await http.get(url + "/metrics")).text.splitlines():
                if line.startswith("gateway_rate_limit_store_unavailable_total "):
                    total += float(line.split()[1])
    return total


async def test_two_replicas_of_everything_lose_nothing_when_each_dies_and_redis_goes_away(
    base_settings: Settings, tmp_path: Path
) -> None:
    """``ticketing dev --replicas 2`` under steady load through both gateways: one replica of
    each service is killed in turn (the relays' lock holders included), then Redis, which
    holds the shared rate limit, is away for 10 s."""
    redis = Passage("127.0.0.1", 6379)
    await redis.start()
    try:
        async with dev_process(
            base_settings,
            tmp_path,
            replicas=2,
            env={
                "TICKETING_IDEMPOTENCY_INFLIGHT_SECONDS": "3",
                "TICKETING_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
                "TICKETING_REDIS_KEY_PREFIX": f"chaos-{uuid.uuid4().hex}:",
            },
        ) as dev:
            seconds = scaled(30, 90)
            step = (seconds - 12) / 5
            took_over: list[float] = []
            inventory, gateway = dev.urls("inventory")[1], dev.urls("gateway")[1]
            summary = await under_load(
                dev,
                seconds,
                at(step * 1, kill_replica(dev, "inventory", inventory)),
                at(step * 2, kill_relay_leader(dev, "order", took_over)),
                at(step * 3, kill_relay_leader(dev, "booking", took_over)),
                at(step * 4, kill_replica(dev, "gateway", gateway)),
                at(step * 5, redis.away(10)),
            )
            assert summary["confirmed"] == summary["accepted"]
            assert dev.log_path.read_bytes().count(b"child died, restarting") >= 4
            assert len(took_over) == 2
            assert max(took_over) < 10  # the standby relay took over within a few seconds
            assert await store_unavailable_count(dev) > 0  # the limit failed open, counted
    finally:
        await redis.stop()
