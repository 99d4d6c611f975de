"""Review of the shared rate limit: ways a client gets past its budget because the limit
fails open where Redis was neither away nor slow (a flood, the pool's cap, an extreme setting)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter as Tally

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from tests.harness import Stack, bearer, gateway_settings, serve
from tests.integration.test_shared_rate_limit import REDIS_URL, prefix
from ticketing.gateway.app import create_app as create_gateway_app
from ticketing.gateway.app import rate_limiter
from ticketing.gateway.ratelimit import SharedRateLimiter
from ticketing.shared.observability import HttpMetrics
from ticketing.shared.settings import Settings, SettingsError

__all__ = ["prefix"]  # the fixture: keys of the test's own, deleted afterwards
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
