"""Per-client rate limits: a token bucket per client id, refilled continuously.

:class:`RateLimiter` keeps the buckets in this process (each gateway replica has its own);
:class:`SharedRateLimiter` keeps them in Redis, so one client's budget holds across replicas.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # until one request is allowed again (0 when allowed)

    def headers(self) -> dict[str, str]:
        """RateLimit header fields (IETF draft) and, when refused, Retry-After."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    """``rate`` requests per second per client on average, bursts up to ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = burst
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def decide(self, client: str) -> Decision:
        return self.take(client)

    def take(self, client: str) -> Decision:
        now = self._clock()
        tokens, last = self._buckets.pop(client, (float(self._burst), now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)  # forget the least recently seen client
        return decision(allowed, tokens, rate=self._rate, burst=self._burst)


def decision(allowed: bool, tokens: float, *, rate: float, burst: int) -> Decision:
    """What a bucket holding ``tokens`` after the request says about it."""
    return Decision(
        allowed=allowed,
        limit=burst,
        remaining=int(tokens),
        reset_seconds=math.ceil((burst - tokens) / rate),
        retry_after=0 if allowed else math.ceil((1 - tokens) / rate),
    )


class Limiter(Protocol):
    async def decide(self, client: str) -> Decision: ...


# One bucket per client as a hash (tokens, and the time they were counted), refilled and taken
# from in one atomic step on Redis's own clock, so that replicas' clocks never disagree about it.
TAKE_ONE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1])
local at = tonumber(bucket[2])
if tokens == nil or at == nil then
    tokens = burst
    at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
end
local left = string.format('%.17g', tokens)
redis.call('HSET', KEYS[1], 'tokens', left, 'at', string.format('%.17g', now))
-- Kept until it would be full again; capped where Redis would read the number as a float.
redis.call('PEXPIRE', KEYS[1], math.min(math.ceil(burst / rate * 1000) + 1000, 1e12))
return {allowed, left}
"""


class SharedRateLimiter:
    """The same buckets as :class:`RateLimiter`, kept in Redis for every gateway replica.

    Each request is first taken from this replica's own bucket (``local``): a client over its
    budget here is refused without a round trip to Redis, and no flood of one client turns
    into a flood of Redis calls. What this replica lets through is then taken from the shared
    bucket. When Redis cannot answer within ``timeout`` (down, slow, or its pool of
    connections busy for that long) the replica's own answer stands: the limit falls back to
    one budget per replica instead of none, and the API stays up without Redis. Such
    fallbacks are counted in ``unavailable`` and logged at most once per
    ``LOG_EVERY_SECONDS``.
    """

    LOG_EVERY_SECONDS = 10.0

    def __init__(
        self,
        redis: Redis,
        rate: float,
        burst: int,
        *,
        key_prefix: str,
        timeout: float,
        unavailable: Counter,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._local = RateLimiter(rate, burst)
        self._take_one = redis.register_script(TAKE_ONE)
        self._rate = rate
        self._burst = burst
        self._prefix = f"{key_prefix}ratelimit:"
        self._timeout = timeout
        self._unavailable = unavailable
        self._logged_at = -math.inf

    async def decide(self, client: str) -> Decision:
        here = self._local.take(client)
        if not here.allowed:
            return here
        try:
            async with asyncio.timeout(self._timeout):
                allowed, tokens = await self._take_one(
                    keys=[self._prefix + client], args=[self._rate, self._burst]
                )
        except (RedisError, OSError, TimeoutError) as error:
            self._unavailable.inc()
            now = time.monotonic()
            if now - self._logged_at >= self.LOG_EVERY_SECONDS:
                self._logged_at = now
                log.warning(
                    "rate limit store unavailable, limiting per replica meanwhile",
                    error=type(error).__name__,
                )
            return here
        return decision(bool(allowed), float(tokens), rate=self._rate, burst=self._burst)
