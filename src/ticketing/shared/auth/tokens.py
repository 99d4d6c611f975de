"""OAuth2 resource-server side: verify JWT access tokens from an OIDC issuer.

The issuer's discovery document names its JWKS; keys are cached and fetched again when a token
names an unknown ``kid`` (at most once per ``min_refresh_seconds``), so a key rotation needs no
restart; callers waiting for keys share one fetch. Only asymmetric algorithms are accepted;
``iss``, ``aud``, ``exp`` and ``nbf`` are checked with a small leeway. Failures say nothing that
would help an attacker.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError, MissingKeyError
from joserfc.jwk import KeySet

from ticketing.shared.errors import Forbidden, TicketingError, Unavailable
from ticketing.shared.http.client import TRANSPORT_ERRORS

ALGORITHMS = ("RS256", "PS256", "ES256")
MAX_TOKEN_LENGTH = 8192
IDP_TIMEOUT_SECONDS = 5.0  # a whole exchange with the identity provider
log = structlog.get_logger(__name__)
# A document that cannot be had: unreachable, a non-2xx answer, or not a JSON object.
DOCUMENT_ERRORS: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, ValueError)
# A key set of the wrong shape ({"keys": 1}, no "keys") raises KeyError or TypeError in joserfc.
KEYS_ERRORS: tuple[type[BaseException], ...] = (*DOCUMENT_ERRORS, JoseError, KeyError, TypeError)


class Unauthenticated(TicketingError):
    """No token, or one that cannot be trusted (401)."""

    kind = "unauthenticated"
    title = "Unauthorized"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called: the token's subject, its client and the permissions it holds."""

    subject: str
    client_id: str
    permissions: frozenset[str]

    def require(self, permission: str) -> None:
        if permission not in self.permissions:
            raise Forbidden(f"this operation needs the {permission} permission")


def permissions_of(claims: dict[str, Any]) -> frozenset[str]:
    """Permissions from the ``scope`` claim and Keycloak realm roles (``realm_access.roles``)."""
    granted: set[str] = set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        granted.update(scope.split())
    realm_access = claims.get("realm_access")
    if isinstance(realm_access, dict):
        roles = realm_access.get("roles")
        if isinstance(roles, list):
            granted.update(role for role in roles if isinstance(role, str))
    return frozenset(granted)


class OidcDiscovery:
    """The issuer's discovery document, fetched once and kept.

    ``url`` fetches it from elsewhere than the issuer's own address (inside a container network,
    Keycloak is reached by its service name while tokens name its public address); the document
    must still name the configured issuer.
    """

    def __init__(self, issuer: str, http: aiohttp.ClientSession, url: str = "") -> None:
        self.issuer = issuer.rstrip("/")
        self._url = url or f"{self.issuer}/.well-known/openid-configuration"
        self._http = http
        self._document: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        if self._document is None:
            async with self._lock:
                if self._document is None:
                    try:
                        document = await get_json(self._http, self._url)
                    except DOCUMENT_ERRORS as error:
                        raise Unavailable("the authorization server cannot be reached") from error
                    if str(document.get("issuer", "")).rstrip("/") != self.issuer:
                        raise Unavailable("the authorization server names another issuer")
                    self._document = document
        return self._document

    async def endpoint(self, name: str) -> str:
        value = (await self.document()).get(name)
        if not isinstance(value, str):
            raise Unavailable(f"the authorization server does not advertise {name}")
        return value


async def get_json(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """GET ``url`` and decode its JSON object; a non-2xx answer raises ClientResponseError."""
    async with http.get(url, headers={"Accept": "application/json"}) as response:
        response.raise_for_status()
        document = await response.json(content_type=None)
    if not isinstance(document, dict):
        raise ValueError("the answer is not a JSON object")
    return document


class JwksCache:
    def __init__(
        self,
        discovery: OidcDiscovery,
        http: aiohttp.ClientSession,
        *,
        min_refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._discovery = discovery
        self._http = http
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._fetching: asyncio.Future[None] | None = None
        self.fetches = 0

    async def keys(self) -> KeySet:
        if self._keys is None:
            await self.refresh()
        assert self._keys is not None
        return self._keys

    async def refresh(self) -> bool:
        """Fetch the JWKS again unless that was done less than ``min_refresh_seconds`` ago;
        whether it was fetched. Every caller that arrives while a fetch is under way waits for
        that one fetch and shares its outcome, keys or error: an issuer that is slow or down is
        asked once, not once per waiting request."""
        if self._fetching is None:
            if self._keys is not None and self._clock() - self._fetched_at < self._min_refresh:
                return False
            self._fetching = asyncio.ensure_future(self._fetch())
            self._fetching.add_done_callback(self._fetched)
        # Shielded: a caller that goes away does not cancel the fetch the others wait for.
        await asyncio.shield(self._fetching)
        return True

    def _fetched(self, fetch: asyncio.Future[None]) -> None:
        self._fetching = None
        if not fetch.cancelled():
            fetch.exception()  # retrieved here too, in case every waiter went away

    async def _fetch(self) -> None:
        url = await self._discovery.endpoint("jwks_uri")
        try:
            keys = KeySet.import_key_set(await get_json(self._http, url))  # type: ignore[arg-type]
        except KEYS_ERRORS as error:
            raise Unavailable("the authorization server's keys cannot be fetched") from error
        self._keys, self._fetched_at = keys, self._clock()
        self.fetches += 1
        log.info("jwks fetched", keys=len(keys.keys))


class TokenVerifier:
    """Verifies tokens, and remembers the ones it verified until they expire.

    A token is immutable and signed, so the answer for the same string cannot change before
    its ``exp``; caching it spares a signature check per request (clients reuse tokens).
    """

    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: int = 30,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jwks = jwks
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock
        self._registry = jwt.JWTClaimsRegistry(
            leeway=leeway_seconds,
            iss={"essential": True, "value": issuer.rstrip("/")},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    async def verify(self, token: str) -> Principal:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("a valid bearer token is required")
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires_at = cached
            if self._clock() < expires_at:
                return principal
            del self._cache[token]
        principal, expires_at = await self._verify(token)
        self._cache[token] = (principal, expires_at)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            decoded = await self._decode(token)
            self._registry.validate(decoded.claims)
        except JoseError as error:
            log.info("token rejected", reason=type(error).__name__)
            raise Unauthenticated("a valid bearer token is required") from None
        claims = decoded.claims
        client_id = claims.get("azp") or claims.get("client_id") or claims["sub"]
        principal = Principal(
            subject=str(claims["sub"]),
            client_id=str(client_id),
            permissions=permissions_of(claims),
        )
        return principal, float(claims["exp"])

    async def _decode(self, token: str) -> jwt.Token:
        try:
            return jwt.decode(token, await self._jwks.keys(), algorithms=ALGORITHMS)
        except (InvalidKeyIdError, MissingKeyError):
            if not await self._jwks.refresh():  # rotated keys? fetch once, rate-limited
                raise
            return jwt.decode(token, await self._jwks.keys(), algorithms=ALGORITHMS)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or raise Unauthenticated."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    raise Unauthenticated("a valid bearer token is required")
