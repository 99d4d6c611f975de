"""A service's own access token, by the OAuth2 client-credentials grant.

authlib writes the token request (form body, client authentication); the request goes over
the services' one HTTP client stack (aiohttp), and the answer is checked here. The token
endpoint comes from the issuer's discovery document. The token is kept and fetched again
shortly before it expires (or at once after an upstream said 401), one fetch at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import structlog
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_token_request

from ticketing.shared.auth.tokens import DOCUMENT_ERRORS, IDP_TIMEOUT_SECONDS, OidcDiscovery
from ticketing.shared.errors import Unavailable
from ticketing.shared.http.client import new_session
from ticketing.shared.http.upstream import Upstream
from ticketing.shared.settings import ServiceName, Settings

log = structlog.get_logger(__name__)
REFRESH_MARGIN_SECONDS = 30.0
DEFAULT_LIFETIME_SECONDS = 60.0  # when the answer names none (RFC 6749 makes it optional)
MAX_LIFETIME_SECONDS = 366 * 24 * 3600.0  # anything longer (or inf, nan) is a broken answer


class ClientCredentials:
    def __init__(
        self,
        discovery: OidcDiscovery,
        http: aiohttp.ClientSession,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._discovery = discovery
        self._http = http
        self._auth = ClientAuth(client_id, client_secret, "client_secret_basic")
        self._scope = scope
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def authorization(self) -> str:
        """The ``Authorization`` header value, with a token valid for a while longer."""
        if self._token is None or self._clock() >= self._expires_at - REFRESH_MARGIN_SECONDS:
            await self._fetch(stale=self._token)
        return f"Bearer {self._token}"

    async def invalidate(self, rejected: str) -> None:
        """The upstream refused ``rejected`` (401): fetch a new token on the next call."""
        if rejected == f"Bearer {self._token}":
            self._expires_at = 0.0

    async def _fetch(self, stale: str | None) -> None:
        async with self._lock:
            if self._token != stale and self._clock() < self._expires_at - REFRESH_MARGIN_SECONDS:
                return  # another caller fetched it while we waited
            endpoint = await self._discovery.endpoint("token_endpoint")
            try:
                token, lifetime = await self._request_token(endpoint)
            except DOCUMENT_ERRORS as error:
                # The status tells a refused secret (401) from an outage; never the body.
                status = getattr(error, "status", None)
                log.warning("token request failed", error=type(error).__name__, status=status)
                raise Unavailable("no access token from the authorization server") from error
            self._token = token
            self._expires_at = self._clock() + lifetime
            self.fetches += 1
            log.info("access token fetched", expires_in=lifetime)

    async def _request_token(self, endpoint: str) -> tuple[str, float]:
        """The grant's request as authlib writes it; the token and its lifetime in seconds. An
        OAuth2 error answer is a 4xx, raised as ClientResponseError; an answer without a usable
        token or lifetime raises ValueError."""
        body = prepare_token_request("client_credentials", scope=self._scope)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        _, headers, body = self._auth.prepare("POST", endpoint, headers, body)
        async with self._http.post(endpoint, data=body, headers=headers) as response:
            response.raise_for_status()
            answer = await response.json(content_type=None)
        if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
            raise ValueError("the token answer holds no access_token")
        lifetime = answer.get("expires_in", DEFAULT_LIFETIME_SECONDS)
        if (
            isinstance(lifetime, bool)
            or not isinstance(lifetime, int | float)
            or not 0 < lifetime < MAX_LIFETIME_SECONDS
        ):
            raise ValueError("the token answer's expires_in is not a usable number of seconds")
        return str(answer["access_token"]), float(lifetime)


@asynccontextmanager
async def upstream_as(
    settings: Settings, service: ServiceName, client_id: str, client_secret: str
) -> AsyncIterator[Upstream]:
    """An :class:`Upstream` to ``service`` that calls with this service's own token (client
    ``client_id``); its sessions are closed on the way out, a failed start included."""
    async with new_session(timeout=IDP_TIMEOUT_SECONDS) as http:
        credentials = ClientCredentials(
            OidcDiscovery(settings.oidc_issuer, http, settings.oidc_discovery_url),
            http,
            client_id,
            client_secret,
        )
        upstream = Upstream(
            service,
            settings.base_urls(service),
            timeout=settings.upstream_timeout,
            credentials=credentials,
        )
        try:
            yield upstream
        finally:
            await upstream.aclose()
