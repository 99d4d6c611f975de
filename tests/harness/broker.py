"""The Kafka-protocol broker of the tests, its topics and consumer groups, and a consumer's
handler driven as its runner drives it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from tests.harness.processes import child_process, free_port
from ticketing.cli.dev_infra import tansu_binary
from ticketing.shared.messaging.consumer import Received


@contextlib.contextmanager
def kafka_broker(port: int | None = None) -> Iterator[str]:
    """``TICKETING_TEST_KAFKA_BOOTSTRAP`` when set (and no port asked); else a Tansu broker on
    ``port`` or a free one."""
    external = os.environ.get("TICKETING_TEST_KAFKA_BOOTSTRAP")
    if external and port is None:
        yield external
        return
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]
    with child_process(argv, port, env={**os.environ, "RUST_LOG": "warn"}):
        yield f"127.0.0.1:{port}"


async def create_topics(bootstrap: str, partitions: int, *names: str) -> None:
    """Create topics with ``partitions`` partitions (ignored when they exist)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for name in names:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(name, partitions, replication_factor=1)])
    finally:
        await admin.close()


async def group_members(bootstrap: str, group: str) -> int:
    """How many members consumer group ``group`` has once its rebalance is over (0 while one
    is going on, or before anyone joined)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    _, _, state, _, _, members = response.groups[0]
    return len(members) if state == "Stable" else 0


async def topic_partitions(bootstrap: str, *topics: str) -> dict[str, int]:
    """How many partitions each of ``topics`` has."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return {topic: len(consumer.partitions_for_topic(topic) or ()) for topic in topics}
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[Any]:
    """Read ``count`` records of ``topic`` from the beginning (no consumer group)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 1) * 1000))
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def as_the_runner_does(
    handle: Callable[[Sequence[Received]], Awaitable[None]], received: Sequence[Received]
) -> None:
    """Hand ``received`` to a consumer's handler as its runner does: as one batch, and when
    that fails, each message alone (the runner's retries and dead letters left out)."""
    try:
        await handle(received)
    except Exception:
        if len(received) == 1:
            raise
        for item in received:
            await handle([item])
