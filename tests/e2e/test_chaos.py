"""The resilience suite: faults injected into ``ticketing dev``'s processes under steady load
(plain bookings) and a mixed load beside it (holds confirmed, holds left to expire,
cancellations), each scenario ending with the consistency check; and a flash sale with a cancel
storm. `make chaos` runs the same scenarios longer (TICKETING_CHAOS_SCALE=full)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.careful import Load
from tests.e2e.consistency import check_consistency
from tests.e2e.devprocess import DevProcess, dev_process
from tests.e2e.faults import (
    Passage,
    at,
    kill,
    kill_relay_leader,
    kill_replica,
    pause,
    store_unavailable_count,
    topics_recreated,
)
from tests.e2e.flash_sale import BUYERS, CANCELS, FIRST_WAVE, PACE, SEATS, Storm, flash_buyer
from tests.e2e.load import prepare_sale, scaled
from tests.e2e.scenario import SCENARIO_ENV, gateway_clients, lifecycle_exercised, under_load
from tests.harness.processes import restart_local_mariadb
from ticketing.shared.settings import Settings


@pytest.fixture
async def dev(base_settings: Settings, tmp_path: Path) -> AsyncIterator[DevProcess]:
    async with dev_process(base_settings, tmp_path, env=SCENARIO_ENV) as running:
        yield running


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
