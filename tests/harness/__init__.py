"""Real infrastructure for the tests: a MySQL-compatible server, a Kafka-protocol broker, the dev
OIDC server and HTTP services on free loopback ports, and the plain helpers the tests share
(fixtures stay in conftest.py). Each module holds one kind; the names are gathered here."""

from tests.harness.broker import (
    as_the_runner_does,
    create_topics,
    group_members,
    kafka_broker,
    read_topic,
    topic_partitions,
)
from tests.harness.databases import (
    drop_databases,
    head_of,
    order_records,
    own_databases,
    sent_uncommitted,
)
from tests.harness.processes import (
    DEV_CLIENTS,
    DEV_IDP,
    REPO,
    child_process,
    dev_idp,
    fetch_token,
    free_port,
    json_lines,
    port_open,
    restart_local_mariadb,
    wait_for_port,
)
from tests.harness.serving import (
    Gateway,
    Stack,
    answer_lifespan,
    bearer,
    chromium_binary,
    gateway_settings,
    render_in_chromium,
    serve,
    until_ready,
)

__all__ = [
    "DEV_CLIENTS",
    "DEV_IDP",
    "REPO",
    "Gateway",
    "Stack",
    "answer_lifespan",
    "as_the_runner_does",
    "bearer",
    "child_process",
    "chromium_binary",
    "create_topics",
    "dev_idp",
    "drop_databases",
    "fetch_token",
    "free_port",
    "gateway_settings",
    "group_members",
    "head_of",
    "json_lines",
    "kafka_broker",
    "order_records",
    "own_databases",
    "port_open",
    "read_topic",
    "render_in_chromium",
    "restart_local_mariadb",
    "sent_uncommitted",
    "serve",
    "topic_partitions",
    "until_ready",
    "wait_for_port",
]
