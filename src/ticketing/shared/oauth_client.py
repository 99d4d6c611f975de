"""A service's own access token, by the OAuth2 client-credentials grant.

authlib writes the token request (form body, client authentication) and reads the token; the
request goes over the services' one HTTP client stack (aiohttp). The token endpoint comes from
the issuer's discovery document. The token is kept and fetched again shortly before it expires
(or at once after an upstream said 401), one fetch at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import structlog
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749 import OAuth2Token
from authlib.oauth2.rfc6749.parameters import prepare_token_request

from ticketing.shared.auth import DOCUMENT_ERRORS, OidcDiscovery
from ticketing.shared.errors import Unavailable

log = structlog.get_logger(__name__)
REFRESH_MARGIN_SECONDS = 30.0


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
                token = await self._request_token(endpoint)
            except DOCUMENT_ERRORS as error:
                log.warning("token request failed", error=type(error).__name__)
                raise Unavailable("no access token from the authorization server") from error
            self._token = str(token["access_token"])
            self._expires_at = self._clock() + float(token.get("expires_in", 60))
            self.fetches += 1
            log.info("access token fetched", expires_in=token.get("expires_in"))

    async def _request_token(self, endpoint: str) -> OAuth2Token:
        """The grant's request as authlib writes it; the answer must carry an access token
        (an OAuth2 error answer is a 4xx, raised as ClientResponseError)."""
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
        return OAuth2Token.from_dict(answer)
