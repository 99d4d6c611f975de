"""The resilience suite: faults injected into ``ticketing dev``'s processes under steady load
(plain bookings) and a mixed load beside it (holds confirmed, holds left to expire,
cancellations), each scenario ending with the consistency check; and a flash sale with a cancel
storm. `make chaos` runs the same scenarios longer (TICKETING_CHAOS_SCALE=full)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.chaos import (
    HOLD_SECONDS,
    MIX,
    TAKING,
    Load,
    Passage,
    Plan,
    book_once,
    cancel,
    check_consistency,
    confirm,
    prepare_sale,
    scaled,
    settled,
    steady_load,
)
from tests.e2e.devprocess import DevProcess, dev_process
from tests.harness import restart_local_mariadb, topic_partitions
from ticketing.contracts.events import BOOKINGS_TOPIC, ORDERS_TOPIC
from ticketing.shared.settings import Settings

RATE = 20.0  # plain bookings a second
MIXED_RATE = 8.0  # bookings a second walked through their lifecycle
SCENARIO_ENV = {
    "TICKETING_IDEMPOTENCY_INFLIGHT_SECONDS": "3",
    "TICKETING_HOLD_SECONDS": str(HOLD_SECONDS),
}


@pytest.fixture
async def dev(base_settings: Settings, tmp_path: Path) -> AsyncIterator[DevProcess]:
    async with dev_process(base_settings, tmp_path, env=SCENARIO_ENV) as running:
        yield running


@contextlib.asynccontextmanager
async def gateway_clients(
    dev: DevProcess, client: str = "ticketing-admin", connections: int = 100
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per gateway replica, with ``client``'s token."""
    token = await dev.token(client, f"{client}-secret")
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url,
                    headers=headers,
                    limits=limits,
                    timeout=httpx.Timeout(10, pool=None),
                )
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
    """Steady booking load and the mixed load (as another client, ``ticketing-client``, which
    confirms and cancels its own bookings) with ``faults`` running beside them, then the
    consistency check.

    Without a ``capacity``, every event has seats for every request the loads could send it (up
    to three tickets each), so a fault must never show as a rejection.
    """
    if capacity is None:
        capacity = math.ceil((RATE + MIXED_RATE) * seconds * 3 / events_count) + 10
    load = Load()
    async with gateway_clients(dev) as apis, gateway_clients(dev, "ticketing-client") as own:
        sale = await prepare_sale(apis[0], events_count=events_count, capacity=capacity)
        await asyncio.gather(
            steady_load(apis, sale, rate=RATE, seconds=seconds, load=load),
            steady_load(own, sale, rate=MIXED_RATE, seconds=seconds, load=load, mixed=True),
            *faults,
        )
    await dev.wait_healthy()
    if before_check is not None:
        await before_check()
    return await check_consistency(dev, load, sale)


def lifecycle_exercised(summary: dict[str, int]) -> None:
    """Every plan of the mixed load ended as meant at least once: holds confirmed, left to
    expire, and cancellations of HELD, CONFIRMED and PENDING bookings."""
    missing = [kind for kind, _, _ in MIX if not summary.get(kind)]
    assert not missing, f"no booking of these plans ended as meant: {missing}; {summary}"


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
        capacity=int(scaled(130, 650)),  # sold out after about two thirds of the run
        events_count=3,
    )
    assert summary["confirmed"] > 0
    assert summary["rejected"] > 0  # the events sold out: both outcomes were exercised
    lifecycle_exercised(summary)
    assert dev.log_path.read_bytes().count(b"child died, restarting") >= 4


async def test_a_paused_broker_delays_but_loses_nothing(dev: DevProcess) -> None:
    summary = await under_load(dev, scaled(10, 40), at(2, pause(dev, "tansu", scaled(5, 20))))
    assert summary["rejected"] == 0
    lifecycle_exercised(summary)


async def test_a_broker_restarted_empty_is_recovered_by_outbox_replay(dev: DevProcess) -> None:
    seconds = scaled(8, 30)

    async def replay() -> None:
        await asyncio.sleep(3)  # let relays and consumers reconnect to the new broker
        await dev.wait_healthy()
        await topics_recreated(dev)
        for service in ("booking", "order"):
            out = await dev.run_cli("outbox", "replay", "--service", service, "--since", "1h")
            assert "replayed" in out or "nothing to replay" in out

    # Tansu keeps nothing: topics and offsets are gone after the kill. The operator replays
    # while the clients still wait (they confirm holds once the lost messages arrive), and
    # again at the end, which delivers every release a second time.
    summary = await under_load(
        dev,
        seconds,
        at(seconds / 2, kill(dev, "tansu")),
        at(seconds / 2, replay()),
        before_check=replay,
    )
    assert summary["rejected"] == 0
    lifecycle_exercised(summary)


async def topics_recreated(dev: DevProcess) -> None:
    """The restarted broker has every topic with all its partitions again. A topic left with
    fewer loses messages for good: producers that knew all the partitions keep publishing to
    the missing ones, Tansu acknowledges them, and no consumer is assigned them."""
    bootstrap = dev.env["TICKETING_KAFKA_BOOTSTRAP"]
    found = await topic_partitions(bootstrap, BOOKINGS_TOPIC, ORDERS_TOPIC)
    expected = dev.settings.kafka_partitions
    assert found == dict.fromkeys((BOOKINGS_TOPIC, ORDERS_TOPIC), expected), (
        f"the broker restarted empty came back with {found}, not {expected} partitions each: a "
        "client's metadata request made Tansu create the topic (with 4 partitions) first, and "
        "`ticketing dev` (devstack.create_topics) did not make it again; messages published "
        "to the partitions missing are acknowledged and never consumed"
    )


async def test_inventory_unavailable_bookings_wait_then_settle(dev: DevProcess) -> None:
    summary = await under_load(
        dev, scaled(10, 30), at(2, pause(dev, "serve inventory", scaled(4, 10)))
    )
    assert summary["rejected"] == 0
    lifecycle_exercised(summary)
    assert summary["retries"] > 0  # clients did see 503s while inventory was away


async def test_a_database_restart_mid_load_loses_nothing(dev: DevProcess) -> None:
    summary = await under_load(
        dev, scaled(10, 30), at(2, restart_local_mariadb(dev.settings, scaled(2, 10)))
    )
    assert summary["rejected"] == 0
    lifecycle_exercised(summary)
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
                **SCENARIO_ENV,
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
            assert summary["rejected"] == 0
            lifecycle_exercised(summary)
            assert dev.log_path.read_bytes().count(b"child died, restarting") >= 4
            assert len(took_over) == 2
            assert max(took_over) < 10  # the standby relay took over within a few seconds
            assert await store_unavailable_count(dev) > 0  # the limit failed open, counted
    finally:
        await redis.stop()


SEATS, BUYERS, CANCELS = 100, 2000, 300
FIRST_WAVE = 1600  # the buyers during the cancel storm; the rest come once it is over
PACE = 200.0  # buyers arriving a second


@dataclass
class Storm:
    """The cancel storm: ``budget`` cancellations of accepted bookings during the first wave of
    buyers; ``over`` once each is answered and its booking settled (its seats back)."""

    budget: int
    sent: int = 0
    done: int = 0
    over: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> bool:
        if self.sent == self.budget:
            return False
        self.sent += 1
        return True

    def finish(self) -> None:
        self.done += 1
        if self.done == self.budget:
            self.over.set()


async def flash_buyer(
    own: list[httpx.AsyncClient],
    desk: list[httpx.AsyncClient],
    index: int,
    body: dict[str, Any],
    load: Load,
    *,
    storm: Storm | None,
) -> None:
    """One buyer: books one ticket (every other one a hold) and waits for the outcome; a held
    one in three is confirmed. During the storm, one in twenty cancels at once (PENDING), and
    winners are cancelled, by themselves or by the support desk (``desk``, an admin)."""
    hold = bool(body.get("hold"))
    booking_id = await book_once(own, index, body, load)
    if booking_id is None:
        return
    plan = Plan("flash", hold, "HELD" if hold else "CONFIRMED")
    load.plans[booking_id] = plan
    canceller = desk if index % 2 else own
    if storm is not None and index % 20 == 0 and storm.take():
        await cancel(canceller, index, booking_id, plan, load)
        await settled(own, index, booking_id, load)
        storm.finish()
        return
    status = await settled(own, index, booking_id, load)
    if status == "HELD" and index % 3 == 0:
        await confirm(own, index, booking_id, plan, load)
    if status in TAKING and storm is not None and storm.take():
        await cancel(canceller, index, booking_id, plan, load)
        await settled(own, index, booking_id, load)
        storm.finish()


async def test_a_flash_sale_with_a_cancel_storm_sells_every_seat_and_no_more(
    base_settings: Settings, tmp_path: Path
) -> None:
    """100 seats, 2,000 buyers of one ticket each (plain bookings and holds) through the
    gateway, 300 of the accepted bookings cancelled while the sale runs, and order killed
    (kill -9) in the middle of it: the seats that went back are sold again, and the sale ends
    with exactly 100 seats held or confirmed."""
    env = {
        "TICKETING_IDEMPOTENCY_INFLIGHT_SECONDS": "3",
        "TICKETING_STATUS_MAX_OPEN_PER_CLIENT": str(BUYERS),  # every buyer waits at once
    }
    async with (
        dev_process(base_settings, tmp_path, env=env) as dev,
        gateway_clients(dev, "ticketing-client", connections=BUYERS) as own,
        gateway_clients(dev) as desk,
    ):
        sale = await prepare_sale(desk[0], events_count=1, capacity=SEATS, customers=BUYERS)
        (event_id,) = sale.events
        load, storm = Load(), Storm(CANCELS)
        # Order, which carries every release to inventory, dies in the middle of the storm.
        crash = asyncio.create_task(at(3, kill(dev, "serve order")))
        first_wave: list[asyncio.Task[None]] = []
        last_wave: list[asyncio.Task[None]] = []
        for index in range(BUYERS):
            if index == FIRST_WAVE:
                # The last wave must find every seat the storm gave back.
                storm_over = asyncio.create_task(storm.over.wait())
                either: list[asyncio.Future[Any]] = [storm_over, asyncio.gather(*first_wave)]
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                storm_over.cancel()
                assert storm.over.is_set(), (
                    f"the first {FIRST_WAVE} buyers ended with {storm.done} of {CANCELS} "
                    "cancellations settled"
                )
                await asyncio.sleep(1.5)  # booking's cached count of seats left is renewed
            body: dict[str, Any] = {
                "customer_id": sale.customers[index],
                "event_id": event_id,
                "ticket_count": 1,
            }
            if index % 2:
                body["hold"] = True
            wave = first_wave if index < FIRST_WAVE else last_wave
            walk = flash_buyer(
                own, desk, index, body, load, storm=storm if wave is first_wave else None
            )
            wave.append(asyncio.create_task(walk))
            await asyncio.sleep(1 / PACE)
        await asyncio.gather(crash, *first_wave, *last_wave)
        await dev.wait_healthy()
        summary = await check_consistency(dev, load, sale)
        left = (await desk[0].get(f"/api/v1/events/{event_id}")).json()["left_capacity"]
        restarted = dev.log_path.read_bytes().count(b"child died, restarting")

    assert len(load.accepted) + load.refused.total() == BUYERS  # every buyer had an answer
    assert set(load.refused) <= {409}, load.refused  # sold out, said at the door
    assert storm.sent == CANCELS
    assert left == 0, summary
    assert summary["held"] + summary["confirmed"] == SEATS, summary  # none oversold or left
    assert summary["held"] > 0, summary
    assert summary["confirmed"] > 0, summary
    assert summary["cancelled"] > SEATS, summary  # the seats went back, and were sold again
    assert restarted == 1
