"""`ticketing dev` re-creates its topics after the broker restarted empty: a topic a client's
metadata request made first, with another partition count, is made again with them all (else
producers that knew every partition would publish to missing ones, never consumed)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.harness.broker import kafka_broker, topic_partitions
from tests.harness.processes import free_port
from ticketing.cli.dev_infra import create_topics
from ticketing.contracts.events import BOOKINGS_TOPIC, ORDERS_TOPIC, TOPICS


async def test_a_topic_made_with_fewer_partitions_is_made_again_with_them_all() -> None:
    with kafka_broker(free_port()) as bootstrap:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:  # what a reconnecting client's metadata request leaves on a restarted Tansu
            await admin.create_topics([NewTopic(ORDERS_TOPIC, 4, replication_factor=1)])
        finally:
            await admin.close()
        await create_topics(bootstrap, 6)
        assert await topic_partitions(bootstrap, *TOPICS) == dict.fromkeys(TOPICS, 6)
        await create_topics(bootstrap, 6)  # all there: nothing is made again
        assert await topic_partitions(bootstrap, BOOKINGS_TOPIC, ORDERS_TOPIC) == {
            BOOKINGS_TOPIC: 6,
            ORDERS_TOPIC: 6,
        }
