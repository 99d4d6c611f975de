"""Token verification against an issuer whose keys and answers the test controls: key rotation
without a restart, rate-limited refetches, one fetch shared by its waiters, broken key sets and
token answers that are unavailable rather than crashes, the claims and algorithms accepted, and
verified tokens remembered until they expire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from litestar import Litestar, Response, get, post

from tests.harness.serving import serve
from ticketing.shared.auth.client_credentials import ClientCredentials
from ticketing.shared.auth.tokens import (
    JwksCache,
    OidcDiscovery,
    Principal,
    TokenVerifier,
    Unauthenticated,
)
from ticketing.shared.errors import Unavailable
from ticketing.shared.http.client import new_session


@dataclass
class Issuer:
    url: str
    keys: list[Any] = field(default_factory=list)
    jwks_requests: int = 0
    jwks_down: bool = False  # answers 503 after a while, as an overloaded issuer would
    jwks_document: Any = None  # answered instead of the keys when set
    token_answer: Any = None  # what the token endpoint answers

    def sign(self, key: Any, alg: str = "RS256", **claims: Any) -> str:
        """A token signed with ``key``; a claim given as None is left out."""
        now = int(time.time())
        payload = {
            "iss": self.url,
            "aud": "ticketing-api",
            "sub": "tester",
            "azp": "tester",
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode({"alg": alg, "kid": key.kid}, payload, key, algorithms=[alg])


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    state = Issuer(url="")

    @get("/.well-known/openid-configuration", sync_to_thread=False)
    def discovery() -> dict[str, str]:
        return {
            "issuer": state.url,
            "jwks_uri": f"{state.url}/jwks",
            "token_endpoint": f"{state.url}/token",
        }

    @post("/token", status_code=200, sync_to_thread=False)
    def token() -> Any:
        return state.token_answer

    @get("/jwks")
    async def jwks() -> Response[dict[str, Any]]:
        state.jwks_requests += 1
        if state.jwks_down:
            await asyncio.sleep(0.05)
            return Response({}, status_code=503)
        if state.jwks_document is not None:
            return Response(state.jwks_document)
        return Response(dict(KeySet(state.keys).as_dict(private=False)))

    async with serve(Litestar([discovery, jwks, token])) as url:
        state.url = url
        yield state


def rsa(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid})


async def verifier_for(
    issuer: Issuer, http: aiohttp.ClientSession, refresh: float = 0.5
) -> tuple[TokenVerifier, JwksCache]:
    jwks = JwksCache(OidcDiscovery(issuer.url, http), http, min_refresh_seconds=refresh)
    return TokenVerifier(jwks, issuer=issuer.url, audience="ticketing-api", leeway_seconds=5), jwks


async def test_key_rotation_needs_no_restart_and_refetches_are_rate_limited(
    issuer: Issuer,
) -> None:
    old, new = rsa("old"), rsa("new")
    issuer.keys = [old]
    async with new_session(timeout=5) as http:
        verifier, jwks = await verifier_for(issuer, http, refresh=1.0)
        assert (await verifier.verify(issuer.sign(old))).subject == "tester"
        issuer.keys = [new]  # the issuer rotates its key
        await asyncio.sleep(1.1)  # refetches happen at most once a second here
        assert (await verifier.verify(issuer.sign(new))).subject == "tester"
        assert jwks.fetches == 2
        for _ in range(5):  # unknown kids do not hammer the issuer
            with pytest.raises(Unauthenticated):
                await verifier.verify(issuer.sign(rsa("stranger")))
        assert jwks.fetches == 2


async def test_waiters_for_the_first_keys_share_one_fetch(issuer: Issuer) -> None:
    key = rsa("first")
    issuer.keys = [key]
    issuer.jwks_down = True
    async with new_session(timeout=5) as http:
        verifier, _ = await verifier_for(issuer, http)
        token = issuer.sign(key)
        results = await asyncio.gather(
            *(verifier.verify(token) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(result, Unavailable) for result in results)
        # One fetch for all of them, not one each in turn (20 x the issuer's delay).
        assert issuer.jwks_requests == 1
        issuer.jwks_down = False
        principals = await asyncio.gather(*(verifier.verify(token) for _ in range(20)))
        assert {principal.subject for principal in principals} == {"tester"}
        assert issuer.jwks_requests == 2


@pytest.mark.parametrize("document", [{"keys": 1}, {"no": "keys"}, {"keys": [{"kty": "??"}]}])
async def test_a_key_set_of_the_wrong_shape_is_unavailable_not_a_crash(
    issuer: Issuer, document: Any
) -> None:
    key = rsa("shape")
    issuer.jwks_document = document
    async with new_session(timeout=5) as http:
        verifier, _ = await verifier_for(issuer, http)
        with pytest.raises(Unavailable):
            await verifier.verify(issuer.sign(key))


@pytest.mark.parametrize(
    "answer",
    [
        {"access_token": "t", "expires_in": [1]},
        {"access_token": "t", "expires_in": 1e400},
        {"access_token": "t", "expires_in": None},
        {"access_token": "t", "expires_in": -5},
        {"access_token": 7, "expires_in": 60},
        {"token": "t"},
        ["t"],
    ],
)
async def test_a_broken_token_answer_is_unavailable_not_a_crash(
    issuer: Issuer, answer: Any
) -> None:
    issuer.token_answer = answer
    async with new_session(timeout=5) as http:
        credentials = ClientCredentials(OidcDiscovery(issuer.url, http), http, "me", "secret")
        with pytest.raises(Unavailable):
            await credentials.authorization()
        issuer.token_answer = {"access_token": "good", "expires_in": 300}
        assert await credentials.authorization() == "Bearer good"


@pytest.mark.parametrize(
    "claims",
    [
        lambda now: {"iss": "http://evil.example/realms/ticketing"},
        lambda now: {"aud": "another-api"},
        lambda now: {"exp": now - 120},
        lambda now: {"nbf": now + 120},
        lambda now: {"sub": None},
    ],
    ids=["issuer", "audience", "expired", "not-yet-valid", "no-subject"],
)
async def test_claims_are_checked(issuer: Issuer, claims: Callable[[int], dict[str, Any]]) -> None:
    key = rsa("k1")
    issuer.keys = [key]
    async with new_session(timeout=5) as http:
        verifier, _ = await verifier_for(issuer, http)
        assert (await verifier.verify(issuer.sign(key))).subject == "tester"
        # Times relative to now, not to when the tests were collected (minutes earlier).
        with pytest.raises(Unauthenticated):
            await verifier.verify(issuer.sign(key, **claims(int(time.time()))))


async def test_only_asymmetric_algorithms_are_accepted(issuer: Issuer) -> None:
    rsa_key, ec_key = rsa("r"), ECKey.generate_key("P-256", parameters={"kid": "e"})
    issuer.keys = [rsa_key, ec_key]
    async with new_session(timeout=5) as http:
        verifier, _ = await verifier_for(issuer, http)
        assert await verifier.verify(issuer.sign(rsa_key, "PS256"))
        assert await verifier.verify(issuer.sign(ec_key, "ES256"))
        secret = OctKey.generate_key(256, parameters={"kid": "r"})
        hs256 = jwt.encode({"alg": "HS256", "kid": "r"}, {"sub": "x"}, secret)
        with pytest.raises(Unauthenticated):
            await verifier.verify(hs256)
        unsigned = issuer.sign(rsa_key).rsplit(".", 1)[0] + "."
        with pytest.raises(Unauthenticated):
            await verifier.verify(unsigned)


class CountingVerifier(TokenVerifier):
    checks = 0

    async def _verify(self, token: str) -> tuple[Principal, float]:
        self.checks += 1
        return await super()._verify(token)


async def test_verified_tokens_are_remembered_until_they_expire(issuer: Issuer) -> None:
    key = rsa("cache")
    issuer.keys = [key]
    now = [time.time()]
    async with new_session(timeout=5) as http:
        jwks = JwksCache(OidcDiscovery(issuer.url, http), http)
        verifier = CountingVerifier(
            jwks, issuer=issuer.url, audience="ticketing-api", clock=lambda: now[0]
        )
        token = issuer.sign(key, exp=int(now[0]) + 60)
        for _ in range(3):
            assert (await verifier.verify(token)).subject == "tester"
        assert verifier.checks == 1
        now[0] += 61  # past exp: the remembered answer is dropped and the token checked again
        await verifier.verify(token)
        assert verifier.checks == 2
