"""What every event-driven service runs beside its HTTP app: its database engine, its outbox
relay and its Kafka consumers, started in the lifespan and stopped in reverse order.

``/health/ready`` answers 200 only when the service can process: its database and Kafka
answer, its consumers have joined their groups, and its outbox relay (when this process runs
one) is running and either leads or waits behind another replica that leads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from faststream.kafka import KafkaBroker
from litestar import Litestar
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.shared.app import register_readiness
from ticketing.shared.auth.client_credentials import upstream_as
from ticketing.shared.db.engine import create_engine, ping
from ticketing.shared.http.app_metrics import registered
from ticketing.shared.http.upstream import Upstream
from ticketing.shared.messaging.broker import consumers_joined, start_with_retry
from ticketing.shared.messaging.broker import ping as ping_broker
from ticketing.shared.messaging.outbox_metrics import OutboxCollector
from ticketing.shared.messaging.publishing import create_producer
from ticketing.shared.messaging.relay import OutboxRelay, relay_lock_name
from ticketing.shared.settings import ServiceName, Settings

log = structlog.get_logger(__name__)
_LOCK_HOLDER = text("SELECT IS_USED_LOCK(:name)")


def _report_crash(task: asyncio.Task[None]) -> None:
    """A background task must never die silently: a crash is logged with its traceback."""
    if not task.cancelled() and task.exception() is not None:
        log.error("background task crashed", task=task.get_name(), exc_info=task.exception())


async def relay_ready(relay: OutboxRelay, engine: AsyncEngine) -> None:
    """Raise unless ``relay`` runs and either leads or waits behind a leader that holds the
    lock: with two replicas only one leads, and the other is ready to take over."""
    if not relay.running:
        raise RuntimeError("the outbox relay is not running")
    if relay.is_leader:
        return
    async with engine.connect() as conn:
        holder = await conn.scalar(_LOCK_HOLDER, {"name": relay.lock_name})
    if holder is None:
        raise RuntimeError("no outbox relay leads yet")


@dataclass(frozen=True, slots=True)
class Runtime:
    app: Litestar
    engine: AsyncEngine
    relay: OutboxRelay

    def relay_job(self) -> Coroutine[Any, Any, None]:
        """The relay's task, for a process that runs it: ``/health/ready`` then depends on it
        (a service may leave its relay to another process, and then asks for none)."""
        register_readiness(self.app, "relay", lambda: relay_ready(self.relay, self.engine))
        # Which replica publishes, for an operator (and a test) to see without reading logs.
        self.app.state.health_details = lambda: {
            "relay": "leader" if self.relay.is_leader else "standby"
        }
        return self.relay.run()


@asynccontextmanager
async def service_runtime(
    app: Litestar, settings: Settings, service: ServiceName, store: Table
) -> AsyncIterator[Runtime]:
    """The service's engine (checked by ``/health/ready``) and the relay of its event store
    (not started); ``/metrics`` shows the store's backlog."""
    engine = create_engine(settings, service)
    relay = OutboxRelay(
        engine,
        store,
        lock_name=relay_lock_name(settings, service),
        producer_factory=lambda: create_producer(settings, f"{service}-relay"),
        batch_size=settings.relay_batch_size,
        poll_interval=settings.relay_poll_interval,
    )
    app.state.relay = relay
    register_readiness(app, "database", lambda: ping(engine))
    try:
        with registered(app.state.metrics, OutboxCollector(engine, service)):
            yield Runtime(app, engine, relay)
    finally:
        await engine.dispose()


@asynccontextmanager
async def calling_runtime(
    app: Litestar, settings: Settings, service: ServiceName, store: Table, *, upstream: ServiceName
) -> AsyncIterator[tuple[Runtime, Upstream]]:
    """The service's :func:`service_runtime` and an :class:`Upstream` to ``upstream`` that
    calls with the service's own token, for a service that both records events and calls
    another."""
    client_id, client_secret = settings.client_credentials(service)
    async with (
        upstream_as(settings, upstream, client_id, client_secret) as client,
        service_runtime(app, settings, service, store) as shared,
    ):
        yield shared, client


@asynccontextmanager
async def consuming(
    app: Litestar, broker: KafkaBroker, *background: Coroutine[Any, Any, None]
) -> AsyncIterator[None]:
    """Start ``broker``'s consumers (retrying while Kafka is down) and ``background`` tasks;
    cancel them all on the way out. Ready once the consumers have joined their groups."""
    register_readiness(app, "kafka", lambda: ping_broker(broker))
    register_readiness(app, "consumers", lambda: consumers_joined(broker))
    tasks = [asyncio.create_task(start_with_retry(broker))]
    tasks += [asyncio.create_task(job) for job in background]
    for task in tasks:
        task.add_done_callback(_report_crash)
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await broker.stop()
