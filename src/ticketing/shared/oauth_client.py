"""A service's own access token, by the OAuth2 client-credentials grant (authlib).

The token endpoint comes from the issuer's discovery document. The token is kept and fetched
again shortly before it expires (or at once after an upstream said 401), one fetch at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from ticketing.shared.auth import OidcDiscovery
from ticketing.shared.errors import Unavailable

log = structlog.get_logger(__name__)
REFRESH_MARGIN_SECONDS = 30.0


class ClientCredentials:
    def __init__(
        self,
        discovery: OidcDiscovery,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        self._discovery = discovery
        self._client = AsyncOAuth2Client(
            client_id=client_id,
            client_secret=client_secret,
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
            scope=scope,
            timeout=5.0,
        )
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
                token = await self._client.fetch_token(endpoint, grant_type="client_credentials")
            except Exception as error:  # authlib and httpx raise many types
                log.warning("token request failed", error=type(error).__name__)
                raise Unavailable("no access token from the authorization server") from error
            self._token = str(token["access_token"])
            self._expires_at = self._clock() + float(token.get("expires_in", 60))
            self.fetches += 1
            log.info("access token fetched", expires_in=token.get("expires_in"))

    async def aclose(self) -> None:
        await self._client.aclose()
