"""One client's rate limit shared by every gateway replica through the machine's real Redis: let
through, and counted, when Redis is away, and never failing open where Redis is neither away
nor slow (a flood, the pool's cap, an extreme setting)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections import Counter as Tally
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from tests.harness.serving import Stack, bearer, gateway_settings, serve
from ticketing.gateway.app import create_app as create_gateway_app
from ticketing.gateway.app import rate_limiter
from ticketing.gateway.ratelimit import SharedRateLimiter
from ticketing.shared.http.observability import HttpMetrics
from ticketing.shared.settings import Settings, SettingsError

REDIS_URL = os.environ.get("TICKETING_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens there


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, socket_timeout=1)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own; its keys are deleted afterwards (nothing else is)."""
    prefix = f"ticketing_test_{uuid.uuid4().hex[:8]}:"
    yield prefix
    redis = Redis.from_url(REDIS_URL, socket_timeout=1)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def replica(redis: Redis, prefix: str, *, rate: float = 0.001, burst: int = 5) -> SharedRateLimiter:
    unavailable = Counter("unavailable", "", registry=CollectorRegistry())
    return SharedRateLimiter(
        redis, rate, burst, key_prefix=prefix, timeout=1.0, unavailable=unavailable
    )


async def test_one_client_gets_its_budget_once_across_replicas(redis: Redis, prefix: str) -> None:
    first, second = replica(redis, prefix), replica(redis, prefix)
    answers = [await (first if i % 2 else second).decide("client-a") for i in range(8)]
    assert [a.allowed for a in answers] == [True] * 5 + [False] * 3
    assert [a.remaining for a in answers[:5]] == [4, 3, 2, 1, 0]
    refused = answers[-1]
    assert refused.headers()["Retry-After"] == str(refused.retry_after)
    assert refused.retry_after >= 1
    assert (await second.decide("client-b")).allowed  # another client, its own budget


async def test_concurrent_requests_through_replicas_never_exceed_the_budget(
    redis: Redis, prefix: str
) -> None:
    replicas = [replica(redis, prefix, burst=10) for _ in range(3)]
    answers = await asyncio.gather(*(replicas[i % 3].decide("flood") for i in range(60)))
    assert sum(a.allowed for a in answers) == 10


async def test_the_bucket_refills_at_the_rate(redis: Redis, prefix: str) -> None:
    limiter = replica(redis, prefix, rate=20, burst=2)
    assert [(await limiter.decide("c")).allowed for _ in range(3)] == [True, True, False]
    await asyncio.sleep(0.12)  # 2.4 tokens' worth, capped at the burst of 2
    assert [(await limiter.decide("c")).allowed for _ in range(3)] == [True, True, False]


async def test_an_unreachable_store_falls_back_to_the_replicas_own_budget() -> None:
    """Redis away: requests are let through, within this replica's own budget (never none),
    and each one the shared bucket could not decide is counted."""
    registry = CollectorRegistry()
    unavailable = Counter("unavailable", "", registry=registry)
    nowhere = Redis.from_url(NOWHERE, socket_timeout=0.2, socket_connect_timeout=0.2)
    limiter = SharedRateLimiter(
        nowhere, 0.001, 2, key_prefix="x:", timeout=0.5, unavailable=unavailable
    )
    try:
        answers = [await limiter.decide("client-a") for _ in range(4)]
    finally:
        await nowhere.aclose()
    assert [a.allowed for a in answers] == [True, True, False, False]
    assert [a.remaining for a in answers[:2]] == [1, 0]
    assert registry.get_sample_value("unavailable_total") == 2  # the refusals needed no Redis


async def test_two_gateway_replicas_share_one_budget_per_client(
    stack: Stack, tokens: dict[str, str], prefix: str
) -> None:
    """Through two real gateways: the admin client gets its burst once in all, alternating
    between them; another client still gets its own."""
    settings = gateway_settings(
        stack,
        redis_url=REDIS_URL,
        redis_key_prefix=prefix,
        gateway_rate_limit_per_second=0.001,
        gateway_rate_limit_burst=4,
    )
    async with (
        serve(create_gateway_app(settings)) as one,
        serve(create_gateway_app(settings)) as two,
        httpx.AsyncClient(headers=bearer(tokens["admin"]), timeout=30) as admin,
        httpx.AsyncClient(headers=bearer(tokens["client"]), timeout=30) as client,
    ):
        statuses = [
            (await admin.get(f"{(one, two)[i % 2]}/api/v1/events")).status_code for i in range(6)
        ]
        other = await client.get(f"{one}/api/v1/events")
    assert statuses == [200] * 4 + [429] * 2
    assert other.status_code == 200


DEAD_UPSTREAM = "http://127.0.0.1:1"  # nothing listens: a request let through ends in 503


async def test_a_concurrent_flood_from_one_client_through_one_gateway_gets_only_its_burst(
    stack: Stack, tokens: dict[str, str], prefix: str
) -> None:
    """400 requests at once from one client: beyond the default pool of 100 Redis connections
    the limiter fails open, and the event loop's own lag under the flood passes the 0.1 s
    timeout for the rest; the whole flood reaches the upstream."""
    settings = gateway_settings(
        stack,
        inventory_url=DEAD_UPSTREAM,
        breaker_open_seconds=600.0,
        redis_url=REDIS_URL,
        redis_key_prefix=prefix,
        gateway_rate_limit_per_second=0.001,
        gateway_rate_limit_burst=5,
    )
    flood = 400
    async with (
        serve(create_gateway_app(settings)) as gateway,
        httpx.AsyncClient(
            headers=bearer(tokens["admin"]),
            timeout=60,
            limits=httpx.Limits(max_connections=flood),
        ) as admin,
    ):
        answers = await asyncio.gather(
            *(admin.get(f"{gateway}/api/v1/events") for _ in range(flood))
        )
    statuses = Tally(answer.status_code for answer in answers)
    assert flood - statuses[429] <= 5, statuses


async def test_more_concurrent_checks_than_the_redis_pool_holds_are_still_limited(
    prefix: str,
) -> None:
    """The gateway's Redis client (as ``rate_limiter`` builds it) has a pool of 100
    connections; the 101st concurrent check gets MaxConnectionsError at once, which is
    neither Redis being away nor slow, and is let through. A generous timeout rules out lag."""
    settings = Settings(
        redis_url=REDIS_URL,
        redis_key_prefix=prefix,
        redis_timeout=2.0,
        gateway_rate_limit_per_second=0.001,
        gateway_rate_limit_burst=10,
    )
    metrics = HttpMetrics("gateway")
    async with rate_limiter(settings, metrics) as limiter:
        answers = await asyncio.gather(*(limiter.decide("flood") for _ in range(300)))
    assert sum(answer.allowed for answer in answers) == 10
    unavailable = metrics.registry.get_sample_value("gateway_rate_limit_store_unavailable_total")
    assert unavailable == 0  # every answer came from the shared bucket


async def test_a_very_slow_rate_still_limits_instead_of_failing_the_script(prefix: str) -> None:
    """burst / rate beyond 1e14 s makes the PEXPIRE argument a float Redis formats as
    '1e+17' and refuses: the script errors on every call, which fails open for good, while
    the in-process limiter accepts the same setting and refuses the second request."""
    redis = Redis.from_url(REDIS_URL, socket_timeout=1)
    registry = CollectorRegistry()
    unavailable = Counter("unavailable", "", registry=registry)
    limiter = SharedRateLimiter(
        redis, 1e-14, 1, key_prefix=prefix, timeout=1.0, unavailable=unavailable
    )
    try:
        answers = [await limiter.decide("slow") for _ in range(2)]
    finally:
        await redis.aclose()
    assert [answer.allowed for answer in answers] == [True, False]
    assert registry.get_sample_value("unavailable_total") == 0


@pytest.mark.parametrize("timeout", ["0", "-1"])
async def test_a_redis_timeout_that_can_never_be_met_is_refused_at_startup(
    timeout: str, prefix: str
) -> None:
    """TICKETING_REDIS_TIMEOUT=0 (or below) is accepted, and then every check times out at
    once and is let through: the rate limit is silently off."""
    environ = {"TICKETING_REDIS_URL": REDIS_URL, "TICKETING_REDIS_TIMEOUT": timeout}
    try:
        settings = Settings.from_env(environ)
    except SettingsError:
        return  # refused, as it should be
    settings = dataclasses.replace(
        settings,
        redis_key_prefix=prefix,
        gateway_rate_limit_per_second=0.001,
        gateway_rate_limit_burst=1,
    )
    async with rate_limiter(settings, HttpMetrics("gateway")) as limiter:
        answers = [await limiter.decide("c") for _ in range(2)]
    assert [answer.allowed for answer in answers] == [True, False]
