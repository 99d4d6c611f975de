"""The outbox backlog as a scrape reads it, on a real event store: pending events only (sent
and internal ones left out), the oldest by position, read off the index."""

from __future__ import annotations

import uuid
from datetime import timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy import insert, text, update

from tests.harness.databases import own_databases
from ticketing.order.tables import event_store
from ticketing.shared.clock import utcnow
from ticketing.shared.db.engine import create_engine
from ticketing.shared.messaging.outbox_metrics import BACKLOG_QUERY, OutboxCollector, backlog


def row(recorded_ago: float, *, sent: bool, topic: str | None = "t") -> dict[str, object]:
    recorded = utcnow() - timedelta(seconds=recorded_ago)
    return {
        "event_id": uuid.uuid4(),
        "stream_id": uuid.uuid4(),
        "stream_type": "order",
        "version": 1,
        "event_type": "OrderConfirmed",
        "schema_version": 1,
        "payload": "{}",
        "actor": "test",
        "recorded_at": recorded,
        "topic": topic,
        "message_key": "k" if topic else None,
        "published_at": recorded if sent or topic is None else None,
    }


async def test_the_backlog_counts_pending_events_and_ages_the_first_of_them() -> None:
    async with own_databases("order") as settings:
        engine = create_engine(settings, "order")
        collector = OutboxCollector(engine, "order")
        registry = CollectorRegistry()
        registry.register(collector)
        try:
            assert await backlog(engine) == (0, None)
            await collector.refresh()
            labels = {"service": "order"}
            assert registry.get_sample_value("outbox_pending_events", labels) == 0
            assert registry.get_sample_value("outbox_oldest_pending_age_seconds", labels) == 0
            # In position order: sent, internal, pending (60 s old), pending (5 s old), sent.
            rows = [
                row(300, sent=True),
                row(200, sent=False, topic=None),
                row(60, sent=False),
                row(5, sent=False),
                row(1, sent=True),
            ]
            async with engine.begin() as conn:
                for values in rows:
                    await conn.execute(insert(event_store).values(**values))
            pending, oldest = await backlog(engine)
            assert (pending, oldest) == (2, rows[2]["recorded_at"])
            await collector.refresh()
            assert registry.get_sample_value("outbox_pending_events", labels) == 2
            age = registry.get_sample_value("outbox_oldest_pending_age_seconds", labels)
            assert age is not None
            assert 60 <= age < 120
            # The relay sends the oldest: the next one is now the oldest.
            async with engine.begin() as conn:
                await conn.execute(
                    update(event_store)
                    .where(event_store.c.event_id == rows[2]["event_id"])
                    .values(published_at=utcnow())
                )
            assert await backlog(engine) == (1, rows[3]["recorded_at"])
            # Cheap at any backlog: the count reads the index alone, the oldest one row of it.
            async with engine.connect() as conn:
                plan = (await conn.execute(text("EXPLAIN " + BACKLOG_QUERY))).mappings().all()
            for step in plan:
                assert step["key"] == "ix_event_store_published_at_position", plan
            assert "Using index" in str(plan[0]["Extra"])
            assert "filesort" not in " ".join(str(step["Extra"]) for step in plan)
        finally:
            await engine.dispose()
