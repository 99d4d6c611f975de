"""Zero trust for every HTTP service: each request's bearer token is verified by the service
itself (the same verifier as the gateway), and the permission an operation declares with
:func:`requires` is checked right after the token, before anything of the request is read.

The permission check lives in the authentication middleware rather than in a Litestar guard,
because Litestar hands every guard a copy of the route handler, made again on every request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.middleware import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
    DefineMiddleware,
)

from ticketing.shared.auth.tokens import (
    IDP_TIMEOUT_SECONDS,
    JwksCache,
    OidcDiscovery,
    Principal,
    TokenVerifier,
    bearer_token,
)
from ticketing.shared.correlation import current_correlation_id, printable_ascii
from ticketing.shared.http.client import new_session
from ticketing.shared.settings import Settings
from ticketing.shared.store.eventstore import Cause
from ticketing.shared.store.table import MAX_ID_LENGTH
from ticketing.shared.tracing import current_traceparent

PUBLIC_PATHS = ["^/health/", "^/schema", "^/docs"]
METRICS_PATH = "^/metrics$"
CAUSATION_ID_HEADER = b"x-causation-id"
PERMISSION = "permission"  # the key of an operation's ``opt`` naming the permission it needs


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        verifier: TokenVerifier = connection.app.state.verifier
        token = bearer_token(authorization(connection.scope))
        principal = await verifier.verify(token)
        permission = connection.route_handler.opt.get(PERMISSION)
        if permission is not None:
            principal.require(permission)
        return AuthenticationResult(user=principal, auth=token)


def actor_of(scope: Any) -> str:
    """The client a request acts for: its token's ``azp`` ("anonymous" without a token)."""
    principal = scope.get("user")
    return principal.client_id if isinstance(principal, Principal) else "anonymous"


def cause_of(scope: Any) -> Cause:
    """Who and what caused the events a request records: the token's client, the request's
    correlation id, and as causation the ``X-Causation-ID`` the caller names (a service acting
    on a message names that message), else the request itself."""
    correlation_id = current_correlation_id()
    causation_id = correlation_id
    for name, value in scope.get("headers", ()):
        if name == CAUSATION_ID_HEADER:
            candidate = value.decode("latin-1").strip()
            if 0 < len(candidate) <= MAX_ID_LENGTH and printable_ascii(candidate):
                causation_id = candidate
            break
    return Cause(
        actor=actor_of(scope),
        correlation_id=correlation_id,
        causation_id=causation_id,
        traceparent=current_traceparent(),
    )


def authorization(scope: Any) -> str | None:
    """The first ``Authorization`` header, read off the scope (ASGI servers hand header names
    over lowercased), since building Litestar's header mapping for one lookup costs more."""
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


def requires(permission: str) -> dict[str, str]:
    """An operation's ``opt``: the caller's token must hold ``permission`` (scope or realm role),
    or the answer is 403."""
    return {PERMISSION: permission}


def create_verifier(settings: Settings, http: aiohttp.ClientSession) -> TokenVerifier:
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
        async with new_session(timeout=IDP_TIMEOUT_SECONDS) as http:
            app.state.verifier = create_verifier(settings, http)
            yield

    return lifespan
