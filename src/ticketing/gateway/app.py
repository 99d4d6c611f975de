"""Gateway app factory: the only public entry point (port 8090)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, asgi
from litestar.types import Receive, Scope, Send
from prometheus_client import Counter, Histogram
from redis.asyncio import BlockingConnectionPool, Redis

from ticketing.gateway.docs import assets_root, docs_handlers
from ticketing.gateway.openapi import MergedSpec
from ticketing.gateway.proxy import Backend, decoded_path, forward
from ticketing.gateway.ratelimit import Limiter, RateLimiter, SharedRateLimiter
from ticketing.gateway.routing import UPSTREAMS, long_request, permission_for, route_for
from ticketing.shared.app import create_http_app, register_readiness
from ticketing.shared.auth.tokens import (
    IDP_TIMEOUT_SECONDS,
    OidcDiscovery,
    Principal,
    Unauthenticated,
)
from ticketing.shared.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
)
from ticketing.shared.http.app_metrics import BreakerCollector
from ticketing.shared.http.breaker import CircuitBreaker
from ticketing.shared.http.client import new_session
from ticketing.shared.http.observability import HttpMetrics
from ticketing.shared.settings import Settings

REDIS_CONNECTIONS = 64


# copy_scope=False: the handler calls no other ASGI app, and the route it sets on the scope
# labels the access log and the request metrics.
@asgi("/api/v1", is_mount=True, copy_scope=False)
async def api_proxy(scope: Scope, receive: Receive, send: Send) -> None:
    """Every public API path: authorize, rate-limit, then stream to the upstream."""
    state = scope["litestar_app"].state
    settings: Settings = state.settings
    path = decoded_path(scope)
    if path is None:
        raise InvalidInput(
            "the path may not hold dot segments, encoded slashes or bytes outside ASCII"
        )
    route = route_for(path)
    if route is None:
        raise NotFound(f"There is nothing at {path}; check the path and the id in it.")
    prefix, name = route
    method = str(scope.get("method", "GET"))
    long = long_request(
        method,
        path,
        scope.get("query_string", b"").decode("latin-1"),
        timeout=settings.upstream_timeout,
        heartbeat=settings.stream_heartbeat_seconds,
    )
    # Long requests have route labels of their own: their durations would swamp the others'.
    scope["path_template"] = f"{prefix}/*" if long is None else long.template
    principal = scope.get("user")
    if not isinstance(principal, Principal):  # never reached without the auth middleware
        raise Unauthenticated("a valid bearer token is required")
    permission = permission_for(method, name)
    if permission is not None:
        principal.require(permission)
    decision = await state.limiter.decide(principal.client_id)
    if not decision.allowed:
        state.rate_limit_refusals.inc()
        raise RateLimited(
            f"rate limit of client {principal.client_id} exceeded; retry later",
            headers=decision.headers(),
        )
    declared = dict(scope.get("headers", ())).get(b"content-length")
    if (
        declared is not None
        and declared.isdigit()
        and int(declared) > settings.max_request_body_bytes
    ):
        raise PayloadTooLarge(f"the body is over {settings.max_request_body_bytes} bytes")
    limit_headers = [(k.encode(), v.encode()) for k, v in decision.headers().items()]
    try:
        await forward(
            state.backends[name].upstream,
            scope,
            receive,
            send,
            body_limit=settings.max_request_body_bytes,
            latency=state.upstream_latency,
            extra_headers=limit_headers,
            long=long,
        )
    except Unavailable as error:
        raise Unavailable(
            f"the {name} service is unavailable; try again shortly",
            retry_after=error.extensions.get("retry_after", 1),
            service=name,
        ) from None


async def backend_ready(backend: Backend) -> None:
    async with asyncio.timeout(1.0):
        reply = await backend.upstream.probe("/health/ready")
    if reply.status_code != 200:
        raise ConnectionError(f"{backend.name} is not ready")


@asynccontextmanager
async def rate_limiter(settings: Settings, metrics: HttpMetrics) -> AsyncIterator[Limiter]:
    """The per-client limit: in Redis, shared by every gateway replica, when
    ``TICKETING_REDIS_URL`` is set; else in this process."""
    rate, burst = settings.gateway_rate_limit_per_second, settings.gateway_rate_limit_burst
    if not settings.redis_url:
        yield RateLimiter(rate, burst)
        return
    unavailable = Counter(
        "gateway_rate_limit_store_unavailable",
        "Requests limited per replica because the shared rate limit store (Redis) did not answer",
        registry=metrics.registry,
    )
    # A bounded pool that makes a caller wait (within the timeout) rather than fail at once
    # when every connection is busy.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_CONNECTIONS,
        timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
    )
    redis = Redis(connection_pool=pool)
    try:
        yield SharedRateLimiter(
            redis,
            rate,
            burst,
            key_prefix=settings.redis_key_prefix,
            timeout=settings.redis_timeout,
            unavailable=unavailable,
        )
    finally:
        await redis.aclose()


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()

    def breaker(name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name,
            window=settings.breaker_window,
            min_calls=settings.breaker_min_calls,
            failure_ratio=settings.breaker_failure_ratio,
            open_seconds=settings.breaker_open_seconds,
            half_open_probes=settings.breaker_half_open_probes,
        )

    @asynccontextmanager
    async def runtime(app: Litestar) -> AsyncIterator[None]:
        backends: dict[str, Backend] = {
            name: Backend.create(name, settings.base_urls(name), breaker, settings.upstream_timeout)
            for name in UPSTREAMS
        }
        metrics: HttpMetrics = app.state.metrics
        # 0 closed, 1 half-open, 2 open (read at scrape).
        upstreams = {name: backend.upstream for name, backend in backends.items()}
        metrics.registry.register(BreakerCollector("gateway_breaker_state", upstreams))
        app.state.rate_limit_refusals = Counter(
            "gateway_rate_limit_refusals",
            "Requests refused with 429 because their client was over its rate limit",
            registry=metrics.registry,
        )
        app.state.upstream_latency = Histogram(
            "gateway_upstream_duration_seconds",
            "Time until an upstream's response headers arrived",
            ["upstream", "status"],
            registry=metrics.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        app.state.backends = backends
        app.state.docs_assets_present = (assets_root(settings) / "swagger-ui-dist").is_dir()
        async with (
            rate_limiter(settings, metrics) as limiter,
            new_session(timeout=IDP_TIMEOUT_SECONDS) as http,
        ):
            app.state.limiter = limiter
            discovery = OidcDiscovery(settings.oidc_issuer, http, settings.oidc_discovery_url)

            async def token_url() -> str | None:
                if settings.docs_token_url:  # the issuer's public address, for browsers
                    return settings.docs_token_url
                return await discovery.endpoint("token_endpoint")

            app.state.spec = MergedSpec(
                {name: backend.upstream for name, backend in backends.items()}, token_url
            )
            for name, backend in backends.items():
                # Reported, not required: a gateway taken out of its balancer because one
                # upstream is down would refuse the requests the others could answer, and could
                # no longer say which service is missing.
                register_readiness(
                    app, name, functools.partial(backend_ready, backend), required=False
                )
            app.state.health_details = lambda: {
                "breakers": {
                    name: {r.url: r.breaker.state.value for r in backend.upstream.replicas}
                    for name, backend in backends.items()
                }
            }
            try:
                yield
            finally:
                for backend in backends.values():
                    await backend.aclose()

    return create_http_app(
        service="gateway",
        settings=settings,
        route_handlers=[api_proxy, *docs_handlers(settings)],
        lifespan=[runtime],
        own_openapi=False,
        public_metrics=False,
        trusts_callers=False,
        description="The only public entry point.",
    )
