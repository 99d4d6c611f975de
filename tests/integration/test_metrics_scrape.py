"""The metrics of issue 22 on the running stack (real MariaDB, Kafka-protocol broker, OIDC):
after a booking through the gateway every new metric is on the scrape with a sensible value,
a redelivered outcome and a poison message are counted, and every metric the dashboard
queries is one the services expose."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import msgspec
import yaml
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.harness.serving import Gateway, Stack, gateway_settings, serve
from tests.integration import dashboard
from tests.integration.flow import create_customer, settled
from tests.integration.helpers import create_event
from ticketing.contracts.events import EVENT_TYPE_HEADER, ORDERS_TOPIC, OrderConfirmed
from ticketing.gateway.app import create_app as create_gateway_app
from ticketing.shared.messaging.publishing import message_headers

Labels = frozenset[tuple[str, str]]
Samples = dict[str, dict[Labels, float]]
PARTITIONS = {"0", "1", "2"}  # the stack's topics (tests/conftest.py)
REPO_DEPLOY = dashboard.DASHBOARD.parents[1]


def parse(exposition: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = frozenset(sample.labels.items())
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The one series of ``name`` whose labels include ``labels``."""
    found = [v for k, v in samples.get(name, {}).items() if set(labels.items()) <= k]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


async def scrape_all(stack: Stack, gateway: Gateway) -> dict[str, Samples]:
    """One scrape of each of the four services (the gateway's with a token)."""
    async with httpx.AsyncClient(timeout=10) as http, gateway.client() as api:
        urls = {
            "inventory": str(stack.inventory.base_url).rstrip("/"),
            "booking": str(stack.booking.base_url).rstrip("/"),
            "order": stack.order_url,
        }
        answers = {name: await http.get(f"{url}/metrics") for name, url in urls.items()}
        answers["gateway"] = await api.get("/metrics")
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
    return {name: parse(answer.text) for name, answer in answers.items()}


async def eventually(
    stack: Stack,
    gateway: Gateway,
    check: Callable[[dict[str, Samples]], None],
    timeout: float = 30,
) -> dict[str, Samples]:
    """Scrape until ``check`` passes (it raises AssertionError until then)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        scraped = await scrape_all(stack, gateway)
        try:
            check(scraped)
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
        else:
            return scraped


async def book_through_gateway(stack: Stack, gateway: Gateway) -> dict[str, object]:
    event = await create_event(stack.inventory, capacity=10, price="25.00")
    customer = await create_customer(stack.booking)
    async with gateway.client() as api:
        answer = await api.post(
            "/api/v1/bookings",
            json={"customer_id": customer["id"], "event_id": event["id"], "ticket_count": 1},
        )
    assert answer.status_code == 202, answer.text
    booking = await settled(stack, answer.json()["id"])
    assert booking["status"] == "CONFIRMED"
    return booking


async def publish(stack: Stack, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(ORDERS_TOPIC, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


BOOKING_ORDERS = {"consumer": "booking-service", "topic": "ticketing.orders"}
ORDER_BOOKINGS = {"consumer": "order-service", "topic": "ticketing.bookings"}


async def test_a_booking_shows_in_every_new_metric(stack: Stack, gateway: Gateway) -> None:
    before = await scrape_all(stack, gateway)
    saga_before = value(
        before["booking"], "booking_saga_duration_seconds_count", outcome="CONFIRMED"
    )
    confirmed_before = value(before["booking"], "booking_outcomes_total", outcome="CONFIRMED")
    assert saga_before is not None
    assert confirmed_before is not None
    await book_through_gateway(stack, gateway)

    def check(scraped: dict[str, Samples]) -> None:
        booking, order = scraped["booking"], scraped["order"]
        count = value(booking, "booking_saga_duration_seconds_count", outcome="CONFIRMED")
        assert count is not None
        assert count >= saga_before + 1
        total = value(booking, "booking_saga_duration_seconds_sum", outcome="CONFIRMED")
        assert total is not None
        assert 0 < total < 60 * count
        outcomes = value(booking, "booking_outcomes_total", outcome="CONFIRMED")
        assert outcomes is not None
        assert outcomes >= confirmed_before + 1
        for outcome in ("HELD", "REJECTED", "EXPIRED", "CANCELLED"):
            assert value(booking, "booking_outcomes_total", outcome=outcome) is not None
        # The relay ran: nothing waits in either store.
        for service, samples in (("booking", booking), ("order", order)):
            assert value(samples, "outbox_pending_events", service=service) == 0
            assert value(samples, "outbox_oldest_pending_age_seconds", service=service) == 0
        # Each group holds every partition of its topic, and has fetched all there is.
        for samples, labels in ((booking, BOOKING_ORDERS), (order, ORDER_BOOKINGS)):
            lag = {
                dict(k)["partition"]: v
                for k, v in samples["consumer_lag_records"].items()
                if set(labels.items()) <= k
            }
            assert set(lag) == PARTITIONS
            assert set(lag.values()) == {0}
            for counter in ("consumer_duplicates_total", "consumer_dead_letters_total"):
                assert value(samples, counter, **labels) is not None
        for service, samples in (("booking", booking), ("order", order)):
            breaker = value(samples, "upstream_breaker_state", service=service)
            assert breaker == 0  # inventory answered: closed
        assert value(scraped["gateway"], "gateway_rate_limit_refusals_total") is not None
        assert value(scraped["gateway"], "gateway_breaker_state", upstream="booking") == 0

    await eventually(stack, gateway, check)


async def test_a_redelivered_outcome_and_a_poison_message_are_counted(
    stack: Stack, gateway: Gateway
) -> None:
    booking = await book_through_gateway(stack, gateway)
    before = (await scrape_all(stack, gateway))["booking"]
    duplicates = value(before, "consumer_duplicates_total", **BOOKING_ORDERS)
    dead = value(before, "consumer_dead_letters_total", **BOOKING_ORDERS)
    saga = value(before, "booking_saga_duration_seconds_count", outcome="CONFIRMED")
    assert duplicates is not None
    assert dead is not None
    # The settlement names the saga's message as its cause: that message, delivered again.
    async with stack.engines["booking"].connect() as conn:
        message_id = await conn.scalar(
            text(
                "SELECT causation_id FROM event_store WHERE stream_id = :id "
                "AND event_type = 'BookingConfirmed'"
            ),
            {"id": str(booking["id"])},
        )
    assert message_id is not None
    again = OrderConfirmed(
        message_id=uuid.UUID(message_id),
        order_id=uuid.UUID(str(booking["order_id"])),
        booking_id=uuid.UUID(str(booking["id"])),
        event_id=uuid.UUID(str(booking["event_id"])),
        ticket_count=1,
        total_price="25.00",
        confirmed_at=datetime.now(UTC),
    )
    key = str(booking["id"]).encode()
    headers = message_headers("OrderConfirmed", message_id, None)
    await publish(stack, msgspec.json.encode(again), key, headers)
    await publish(stack, b"{}", key, [(EVENT_TYPE_HEADER, b"NoSuchEvent")])

    def check(scraped: dict[str, Samples]) -> None:
        samples = scraped["booking"]
        assert value(samples, "consumer_duplicates_total", **BOOKING_ORDERS) == duplicates + 1
        assert value(samples, "consumer_dead_letters_total", **BOOKING_ORDERS) == dead + 1
        lag = [
            v
            for k, v in samples["consumer_lag_records"].items()
            if set(BOOKING_ORDERS.items()) <= k
        ]
        assert set(lag) == {0}
        # A redelivery settles nothing again.
        assert value(samples, "booking_saga_duration_seconds_count", outcome="CONFIRMED") == saga

    await eventually(stack, gateway, check)


async def test_the_gateway_counts_each_rate_limit_refusal(stack: Stack, gateway: Gateway) -> None:
    settings = gateway_settings(
        stack, gateway_rate_limit_burst=1, gateway_rate_limit_per_second=0.001, redis_url=""
    )
    async with serve(create_gateway_app(settings)) as url:
        limited = dataclasses.replace(gateway, url=url)
        async with limited.client() as api:
            statuses = [(await api.get("/api/v1/venues")).status_code for _ in range(4)]
            assert statuses[0] != 429
            assert statuses[1:] == [429, 429, 429]
            scraped = parse((await api.get("/metrics")).text)
    assert value(scraped, "gateway_rate_limit_refusals_total") == 3


async def test_prometheus_client_may_read_the_gateway_metrics_and_nothing_else(
    gateway: Gateway,
) -> None:
    """The client prometheus.yml names holds no role: its token reads /metrics, not the API."""
    config = yaml.safe_load((REPO_DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "gateway"]
    client_id = job["oauth2"]["client_id"]
    realm = json.loads((REPO_DEPLOY / "dev-idp" / "realm.json").read_text())
    (client,) = [c for c in realm["clients"] if c["client_id"] == client_id]
    async with httpx.AsyncClient(timeout=10) as http:
        issued = await http.post(
            f"{gateway.settings.oidc_issuer}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, client["client_secret"]),
        )
        assert issued.status_code == 200, issued.text
        token = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        scraped = await http.get(f"{gateway.url}/metrics", headers=token)
        assert scraped.status_code == 200
        assert "gateway_breaker_state" in scraped.text
        assert (await http.get(f"{gateway.url}/metrics")).status_code == 401
        refused = await http.post(f"{gateway.url}/api/v1/venues", json={}, headers=token)
        assert refused.status_code == 403


async def test_every_metric_the_dashboard_queries_is_exposed(
    stack: Stack, gateway: Gateway
) -> None:
    await book_through_gateway(stack, gateway)
    used = dashboard.used_names(dashboard.load())
    assert used  # the dashboard queries something

    def check(scraped: dict[str, Samples]) -> None:
        exposed = {name for samples in scraped.values() for name in samples}
        assert used - exposed == set()

    await eventually(stack, gateway, check)
