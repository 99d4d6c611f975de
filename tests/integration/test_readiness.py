"""``/health/ready`` of booking and order means "can process": their consumers have joined
their groups and their outbox relay runs, so the first booking after "ready" settles as fast as
the ones after it.

Every test starts the services on a broker of its own (consumer groups that never existed) and
on databases of its own (no other test's relay holds their relay lock). The session timeout is
long, so that Tansu holds a group's first join for seconds: a service that called itself ready
before its consumers joined would be caught.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import statistics
import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.broker import create_topics, group_members, kafka_broker
from tests.harness.databases import drop_databases
from tests.harness.processes import free_port, json_lines, port_open
from tests.harness.serving import Stack, bearer, serve, until_ready
from tests.integration.flow import book, settled, setup_sale
from ticketing.booking.app import create_app as create_booking_app
from ticketing.booking.settlement import CONSUMER as BOOKING_GROUP
from ticketing.contracts.events import TOPICS
from ticketing.inventory.app import create_app as create_inventory_app
from ticketing.order.app import create_app as create_order_app
from ticketing.order.service import CONSUMER as ORDER_GROUP
from ticketing.shared.db.engine import create_engine
from ticketing.shared.db.migrations import upgrade
from ticketing.shared.settings import DATABASE_SERVICES, Settings

SESSION_TIMEOUT_MS = 8000  # Tansu holds a new group's first join for about half of it
# How long the first booking after "ready" may take: far above what a booking takes once the
# stack runs (tens of ms), far below the join a service that is not ready yet still waits for.
FIRST_BOOKING_SECONDS = 2.0


@pytest.fixture(scope="module")
async def own_databases(base_settings: Settings) -> AsyncIterator[Settings]:
    settings = dataclasses.replace(base_settings, db_prefix=f"{base_settings.db_prefix}ready_")
    try:
        for service in DATABASE_SERVICES:
            await asyncio.to_thread(upgrade, settings, service)
        yield settings
    finally:
        await drop_databases(settings)


@pytest.fixture
def own_broker() -> Iterator[str]:
    with kafka_broker(free_port()) as bootstrap:
        yield bootstrap


@pytest.fixture
def settings(own_databases: Settings, own_broker: str) -> Settings:
    return dataclasses.replace(
        own_databases,
        kafka_bootstrap=own_broker,
        kafka_session_timeout_ms=SESSION_TIMEOUT_MS,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,  # as ``ticketing dev`` polls Tansu
        relay_poll_interval=0.05,
    )


async def test_ready_only_once_the_consumers_joined_their_groups(settings: Settings) -> None:
    await create_topics(settings.kafka_bootstrap, 3, *TOPICS)
    async with (
        serve(create_booking_app(settings)) as booking_url,
        serve(create_order_app(settings)) as order_url,
    ):
        for url, group in ((booking_url, BOOKING_GROUP), (order_url, ORDER_GROUP)):
            ready = await until_ready(url)
            assert await group_members(settings.kafka_bootstrap, group) == 1, (
                f"{group} answered ready before its consumer joined: {ready.text}"
            )
            assert ready.json()["checks"] == {
                "database": "ok",
                "relay": "ok",
                "kafka": "ok",
                "consumers": "ok",
            }


async def test_a_replica_without_partitions_and_with_its_relay_on_standby_is_ready(
    settings: Settings,
) -> None:
    """Two order replicas, one partition: the second gets no partition, and its relay waits
    behind the first one's lock; it can still take over either, so it is ready."""
    await create_topics(settings.kafka_bootstrap, 1, *TOPICS)
    first_app, second_app = create_order_app(settings), create_order_app(settings)
    async with serve(first_app) as first:
        await until_ready(first)
        async with serve(second_app) as second:
            await until_ready(second)
            await until_ready(first)
            async with asyncio.timeout(60):
                while await group_members(settings.kafka_bootstrap, ORDER_GROUP) != 2:
                    await asyncio.sleep(0.1)
            leaders = [app.state.relay.is_leader for app in (first_app, second_app)]
            assert leaders == [True, False]


async def test_the_first_booking_after_ready_settles_like_the_later_ones(
    settings: Settings, tokens: dict[str, str]
) -> None:
    await create_topics(settings.kafka_bootstrap, 3, *TOPICS)
    engines: dict[str, AsyncEngine] = {n: create_engine(settings, n) for n in DATABASE_SERVICES}
    try:
        seconds = await bookings_settled_after_ready(settings, tokens, engines, count=6)
    finally:
        for engine in engines.values():
            await engine.dispose()
    first, later = seconds[0], statistics.median(seconds[1:])
    assert first < FIRST_BOOKING_SECONDS, (
        f"the first booking after ready took {first:.2f} s, later ones {later:.3f} s"
    )


async def bookings_settled_after_ready(
    settings: Settings, tokens: dict[str, str], engines: dict[str, AsyncEngine], count: int
) -> list[float]:
    """Start inventory, booking and order; as soon as booking and order are ready, book
    ``count`` times, one after the other: how long each booking took to settle."""
    async with serve(create_inventory_app(settings)) as inventory_url:
        settings = dataclasses.replace(settings, inventory_url=inventory_url)
        async with (
            serve(create_booking_app(settings)) as booking_url,
            serve(create_order_app(settings)) as order_url,
            httpx.AsyncClient(base_url=inventory_url, headers=bearer(tokens["admin"])) as inventory,
            httpx.AsyncClient(base_url=booking_url, headers=bearer(tokens["admin"])) as booking,
        ):
            stack = Stack(settings, inventory, booking, order_url, engines)
            await asyncio.gather(until_ready(booking_url), until_ready(order_url))
            customer_id, event_id = await setup_sale(stack, capacity=count)
            return [await settle_one(stack, customer_id, event_id) for _ in range(count)]


async def settle_one(stack: Stack, customer_id: str, event_id: str) -> float:
    """Book one ticket; the seconds until the booking settled (it must be confirmed)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    accepted = await book(stack, customer_id, event_id)
    assert accepted.status_code == 202, accepted.text
    outcome = await settled(stack, accepted.json()["id"], timeout=60)
    assert outcome["status"] == "CONFIRMED", outcome
    return loop.time() - started


async def test_a_booking_process_is_ready_once_joined_and_logs_one_format(
    settings: Settings,
) -> None:
    """``ticketing serve booking`` as a real process: ready only after its consumer joined,
    and every line it writes is JSON, although booking builds a second Litestar app while it
    starts (for its OpenAPI document), which would bring Litestar's own log format along."""
    await create_topics(settings.kafka_bootstrap, 3, *TOPICS)
    port = free_port()
    env = {
        **os.environ,
        "TICKETING_DB_PREFIX": settings.db_prefix,
        "TICKETING_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TICKETING_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "TICKETING_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        "TICKETING_OIDC_ISSUER": settings.oidc_issuer,
        "TICKETING_BOOKING_PORT": str(port),
        "TICKETING_LOG_FORMAT": "json",
        "TICKETING_LOG_LEVEL": "INFO",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "ticketing", "serve", "booking"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            while not port_open(port):
                assert process.returncode is None, "booking exited early"
                await asyncio.sleep(0.05)
        await until_ready(f"http://127.0.0.1:{port}")
        assert await group_members(settings.kafka_bootstrap, BOOKING_GROUP) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    records = json_lines(stderr)
    assert {"service started", "Application startup complete.", "service stopped"} <= {
        record["event"] for record in records
    }
