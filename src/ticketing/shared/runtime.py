"""What every event-driven service runs beside its HTTP app: its database engine, its outbox
relay and its Kafka consumers, started in the lifespan and stopped in reverse order."""

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
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.shared.db import create_engine, ping
from ticketing.shared.http import register_readiness
from ticketing.shared.messaging import ping as ping_broker
from ticketing.shared.messaging import start_with_retry
from ticketing.shared.relay import OutboxRelay, create_producer, relay_lock_name
from ticketing.shared.settings import ServiceName, Settings

log = structlog.get_logger(__name__)


def _report_crash(task: asyncio.Task[None]) -> None:
    """A background task must never die silently: a crash is logged with its traceback."""
    if not task.cancelled() and task.exception() is not None:
        log.error("background task crashed", task=task.get_name(), exc_info=task.exception())


@dataclass(frozen=True, slots=True)
class Runtime:
    engine: AsyncEngine
    relay: OutboxRelay


@asynccontextmanager
async def service_runtime(
    app: Litestar, settings: Settings, service: ServiceName, outbox: Table
) -> AsyncIterator[Runtime]:
    """The service's engine (checked by ``/health/ready``) and its outbox relay (not started)."""
    engine = create_engine(settings, service)
    relay = OutboxRelay(
        engine,
        outbox,
        lock_name=relay_lock_name(settings, service),
        producer_factory=lambda: create_producer(settings, f"{service}-relay"),
        batch_size=settings.relay_batch_size,
        poll_interval=settings.relay_poll_interval,
    )
    app.state.relay = relay
    register_readiness(app, "database", lambda: ping(engine))
    try:
        yield Runtime(engine, relay)
    finally:
        await engine.dispose()


@asynccontextmanager
async def consuming(
    app: Litestar, broker: KafkaBroker, *background: Coroutine[Any, Any, None]
) -> AsyncIterator[None]:
    """Start ``broker``'s consumers (retrying while Kafka is down) and ``background`` tasks;
    cancel them all on the way out."""
    register_readiness(app, "kafka", lambda: ping_broker(broker))
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
