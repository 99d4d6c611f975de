"""Zero trust: every service verifies tokens itself, against a real OIDC server; and a service's
own client-credentials token is renewed before it expires."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.harness.processes import fetch_token
from tests.harness.serving import bearer
from ticketing.shared.auth.client_credentials import ClientCredentials
from ticketing.shared.auth.tokens import (
    OidcDiscovery,
)
from ticketing.shared.http.client import new_session

PROBLEM = "application/problem+json"


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT, read without checking it (to build forgeries from)."""
    header, payload, _ = token.split(".")

    def part(text: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return value

    return part(header), part(payload)


async def test_no_token_or_a_bad_one_is_401_with_a_bearer_challenge(inventory_url: str) -> None:
    async with httpx.AsyncClient(base_url=inventory_url) as client:
        for headers in (
            {},
            {"Authorization": "Bearer not-a-jwt"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": "Bearer " + "x" * 10_000},
        ):
            response = await client.get("/api/v1/events", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["detail"] == "a valid bearer token is required"


async def test_a_token_signed_by_someone_else_is_401(
    inventory_url: str, tokens: dict[str, str]
) -> None:
    header, claims = unverified(tokens["admin"])
    forged_key = RSAKey.generate_key(2048, parameters={"kid": header["kid"]})
    forged = jwt.encode({"alg": "RS256", "kid": header["kid"]}, claims, forged_key)
    async with httpx.AsyncClient(base_url=inventory_url) as client:
        response = await client.get("/api/v1/events", headers=bearer(forged))
    assert response.status_code == 401


async def test_permissions_decide_writes_reads_need_any_valid_token(
    inventory_url: str, tokens: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=inventory_url) as client:
        venue = {"name": "Hall", "address": "1 Main St", "total_capacity": 10}
        refused = await client.post("/api/v1/venues", json=venue, headers=bearer(tokens["client"]))
        assert refused.status_code == 403
        assert refused.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
        assert "inventory:write" in refused.json()["detail"]
        read = await client.get("/api/v1/events", headers=bearer(tokens["client"]))
        assert read.status_code == 200
        created = await client.post("/api/v1/venues", json=venue, headers=bearer(tokens["admin"]))
        assert created.status_code == 201
        reservation = {"booking_id": str(uuid.uuid4()), "ticket_count": 1}
        path = f"/internal/v1/events/{uuid.uuid4()}/reservations"
        for who in ("admin", "client"):
            response = await client.post(path, json=reservation, headers=bearer(tokens[who]))
            assert response.status_code == 403, who
        allowed = await client.post(path, json=reservation, headers=bearer(tokens["order"]))
        assert allowed.status_code == 404  # past the guard: the event does not exist


async def test_scope_claim_grants_permissions_too(inventory_url: str, oidc_issuer: str) -> None:
    token = fetch_token(oidc_issuer, "admin", scope="inventory:write")
    assert unverified(token)[1]["scope"] == "inventory:write"
    async with httpx.AsyncClient(base_url=inventory_url) as client:
        venue = {"name": "Hall", "address": "1 Main St", "total_capacity": 10}
        response = await client.post("/api/v1/venues", json=venue, headers=bearer(token))
    assert response.status_code == 201


async def test_health_metrics_and_schema_are_public(inventory_url: str) -> None:
    async with httpx.AsyncClient(base_url=inventory_url) as client:
        for path in ("/health/live", "/health/ready", "/metrics", "/schema/openapi.json"):
            assert (await client.get(path)).status_code == 200, path


async def test_booking_verifies_tokens_itself(stack: Any, tokens: dict[str, str]) -> None:
    base = str(stack.booking.base_url)
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get(f"/api/v1/bookings/{uuid.uuid4()}")).status_code == 401
        customer = {"name": "A", "email": f"a{uuid.uuid4().hex[:8]}@example.com"}
        refused = await client.post(
            "/api/v1/customers", json=customer, headers=bearer(tokens["order"])
        )
        assert refused.status_code == 403
        allowed = await client.post(
            "/api/v1/customers", json=customer, headers=bearer(tokens["client"])
        )
        assert allowed.status_code == 201


async def test_client_credentials_token_is_refreshed_before_it_expires(oidc_issuer: str) -> None:
    now = [1000.0]
    async with new_session(timeout=5) as http:
        credentials = ClientCredentials(
            OidcDiscovery(oidc_issuer, http),
            http,
            "order-service",
            "order-service-secret",
            clock=lambda: now[0],
        )
        first = await credentials.authorization()
        assert await credentials.authorization() == first
        assert credentials.fetches == 1
        now[0] += 300 - 29  # within the refresh margin of a 300 s token
        await credentials.authorization()
        assert credentials.fetches == 2
