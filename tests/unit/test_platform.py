import gc
import os
import threading
import time
import uuid
from typing import Any

import pytest

from ticketing.shared.ids import new_id
from ticketing.shared.observability import (
    HttpMetrics,
    add_correlation_id,
    correlation_id_bound,
    current_correlation_id,
    observability_middleware,
)
from ticketing.shared.problems import _field_errors
from ticketing.shared.serving import GC_THRESHOLDS, settle_heap, takes_proxy_headers
from ticketing.shared.settings import Settings, SettingsError


def test_defaults_match_the_documented_ones() -> None:
    settings = Settings.from_env({})
    assert settings.mysql_url == "mysql+aiomysql://root@127.0.0.1:3306"
    assert settings.database_name("inventory") == "ticketing_inventory"
    assert [settings.bind(s)[1] for s in ("inventory", "booking", "order", "gateway")] == [
        8081,
        8082,
        8083,
        8090,
    ]


def test_environment_values_are_converted() -> None:
    settings = Settings.from_env(
        {
            "TICKETING_INVENTORY_PORT": "9001",
            "TICKETING_DB_PREFIX": "t1_",
            "TICKETING_KAFKA_ENABLE_IDEMPOTENCE": "true",
            "TICKETING_MYSQL_URL": "mysql+aiomysql://u:p@db:3306?charset=utf8mb4",
        }
    )
    assert settings.inventory_port == 9001
    assert settings.kafka_enable_idempotence is True
    assert (
        settings.database_url("inventory")
        == "mysql+aiomysql://u:p@db:3306/t1_inventory?charset=utf8mb4"
    )


@pytest.mark.parametrize(
    "environ",
    [
        {"TICKETING_INVENTORY_PORT": "eighty"},
        {"TICKETING_KAFKA_ENABLE_IDEMPOTENCE": "maybe"},
        {"TICKETING_DB_PREFIX": "x`; DROP"},
        {"TICKETING_MYSQL_URL": "mysql+aiomysql://root@127.0.0.1:3306/somedb"},
        {"TICKETING_LOG_FORMAT": "xml"},
        {"TICKETING_CONSUMER_BATCH_SIZE": "0"},
        {"TICKETING_RELAY_BATCH_SIZE": "-1"},
        {"TICKETING_KAFKA_PARTITIONS": "0"},
    ],
)
def test_unusable_values_fail_with_the_variable_named(environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="TICKETING_"):
        Settings.from_env(environ)


def test_ids_are_uuid7_and_time_ordered() -> None:
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert first < second
    assert len({new_id() for _ in range(1000)}) == 1000


def random_bits(value: uuid.UUID) -> int:
    return value.int & ((1 << 62) - 1)


def test_a_forked_child_never_repeats_its_parent_s_random_bits() -> None:
    new_id()  # the parent holds a page of random bytes now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, str(random_bits(new_id())).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        childs = int(pipe.read())
    assert childs != random_bits(new_id())


def test_threads_draw_distinct_random_bits() -> None:
    drawn: list[int] = []

    def draw() -> None:
        drawn.extend(random_bits(new_id()) for _ in range(2000))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(drawn)) == len(drawn) == 8000


def test_validation_errors_name_the_field() -> None:
    errors = _field_errors([{"message": "Expected `int` >= 1 - at `$.total_capacity`"}])
    assert errors == [
        {"field": "total_capacity", "message": "Expected `int` >= 1", "source": "body"}
    ]


async def test_a_request_s_correlation_id_is_seen_inside_it_and_gone_after() -> None:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_correlation_id())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    metrics = HttpMetrics("test")
    middleware = observability_middleware(app, metrics)
    first: Any = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-request-id", b"r-1")],
    }
    second: Any = {**first, "headers": []}
    await middleware(first, receive, send)
    await middleware(second, receive, send)
    assert seen[0] == "r-1"
    assert seen[1] not in (None, "r-1")  # a fresh id for a request that brings none
    assert (b"x-request-id", b"r-1") in sent[0]["headers"]
    assert current_correlation_id() is None
    labels = {"service": "test", "method": "GET", "route": "unmatched", "status": "204"}
    assert metrics.registry.get_sample_value("http_requests_total", labels) == 2
    with correlation_id_bound("m-1"):
        assert add_correlation_id(None, "info", {"event": "x"})["correlation_id"] == "m-1"
    assert "correlation_id" not in add_correlation_id(None, "info", {"event": "x"})


def test_a_started_service_settles_its_heap() -> None:
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_only_the_gateway_reads_forwarded_headers() -> None:
    assert takes_proxy_headers("gateway")
    assert not any(takes_proxy_headers(s) for s in ("inventory", "booking", "order"))
