"""The signals ``/health/ready`` reads: whether an aiokafka consumer has joined its group (even
with no partition), and whether the outbox relay runs once the service asked it to. The real
groups and the real lock are exercised in tests/integration/test_readiness.py."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer
from litestar import Litestar

from ticketing.booking.tables import event_store
from ticketing.shared.app import create_http_app
from ticketing.shared.db.engine import create_engine
from ticketing.shared.messaging.broker import has_joined
from ticketing.shared.messaging.relay import OutboxRelay
from ticketing.shared.runtime import relay_ready, service_runtime
from ticketing.shared.settings import Settings


async def test_a_consumer_has_joined_once_a_join_gave_it_an_assignment_even_an_empty_one() -> None:
    consumer = AIOKafkaConsumer("ticketing.bookings", group_id="g", bootstrap_servers="nowhere:1")
    assert not has_joined(consumer)
    assert consumer.assignment() == set()  # the same answer as after a join that gave nothing
    # What aiokafka's group coordinator does when a join completes (one member too many).
    consumer._subscription.assign_from_subscribed(set())
    assert has_joined(consumer)
    # A rebalance starting later keeps the assignment until the next join completes.
    consumer._subscription.begin_reassignment()
    assert has_joined(consumer)


async def test_a_consumer_that_was_never_subscribed_has_not_joined() -> None:
    assert not has_joined(AIOKafkaConsumer(group_id="g", bootstrap_servers="nowhere:1"))


def app_for(settings: Settings) -> Litestar:
    return create_http_app(
        service="order", settings=settings, route_handlers=[], authenticate=False
    )


async def test_readiness_asks_for_the_relay_only_once_the_service_runs_it() -> None:
    settings = Settings()
    app = app_for(settings)
    async with service_runtime(app, settings, "order", event_store) as runtime:
        assert set(app.state.readiness) == {"database"}
        job = runtime.relay_job()
        assert set(app.state.readiness) == {"database", "relay"}
        job.close()  # never started: no connection is made


async def test_a_relay_that_is_not_running_is_not_ready() -> None:
    settings = Settings()
    engine = create_engine(settings, "order")
    relay = OutboxRelay(engine, event_store, lock_name="l", producer_factory=lambda: None)
    try:
        with pytest.raises(RuntimeError, match="not running"):
            await relay_ready(relay, engine)
        relay.running, relay.is_leader = True, True
        await relay_ready(relay, engine)  # a leader needs no look at the lock
    finally:
        await engine.dispose()
