"""Zero trust for every HTTP service: each request's bearer token is verified by the service
itself (the same verifier as the gateway), and guards check permissions per operation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import httpx
from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
    DefineMiddleware,
)

from ticketing.shared.auth import JwksCache, OidcDiscovery, Principal, TokenVerifier, bearer_token
from ticketing.shared.settings import Settings

PUBLIC_PATHS = ["^/health/", "^/schema", "^/docs"]
METRICS_PATH = "^/metrics$"
Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Coroutine[Any, Any, None]]


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        verifier: TokenVerifier = connection.app.state.verifier
        token = bearer_token(authorization(connection.scope))
        return AuthenticationResult(user=await verifier.verify(token), auth=token)


def authorization(scope: Any) -> str | None:
    """The first ``Authorization`` header, read off the scope: building Litestar's header
    mapping for this one lookup was about 4% of the gateway's CPU per request. ASGI servers
    hand header names over lowercased."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


def bearer_auth(*, public_metrics: bool) -> DefineMiddleware:
    """Verify tokens everywhere but health, docs and (on internal services) metrics."""
    exclude = [*PUBLIC_PATHS, METRICS_PATH] if public_metrics else PUBLIC_PATHS
    # Litestar lets OPTIONS through unauthenticated by default; no method is exempt here (the
    # API serves no cross-origin browsers, and the gateway proxies every method).
    return DefineMiddleware(BearerAuthMiddleware, exclude=exclude, exclude_http_methods=())


def requires(permission: str) -> Guard:
    """A guard: the caller's token must hold ``permission`` (scope or realm role).

    A coroutine on purpose: Litestar runs a plain function guard in a worker thread, which cost
    about a tenth of a booking request's CPU.
    """

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal: Principal = connection.user
        principal.require(permission)

    return guard


def create_verifier(settings: Settings, http: httpx.AsyncClient) -> TokenVerifier:
    discovery = OidcDiscovery(settings.oidc_issuer, http, settings.oidc_discovery_url)
    jwks = JwksCache(discovery, http, min_refresh_seconds=settings.jwks_min_refresh_seconds)
    return TokenVerifier(
        jwks,
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        leeway_seconds=settings.oidc_leeway_seconds,
    )


def verifier_lifespan(settings: Settings) -> Callable[[Litestar], Any]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=5.0) as http:
            app.state.verifier = create_verifier(settings, http)
            yield

    return lifespan
