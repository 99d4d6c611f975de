from typing import Any, cast

import pytest
from litestar.types import Scope

from ticketing.gateway.openapi import merge
from ticketing.gateway.proxy import decoded_path, request_headers, response_headers, target_of
from ticketing.gateway.ratelimit import RateLimiter
from ticketing.gateway.routing import permission_for, upstream_for
from ticketing.shared.errors import InvalidInput


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/api/v1/venues", "inventory"),
        ("/api/v1/venues/abc", "inventory"),
        ("/api/v1/events/1/x", "inventory"),
        ("/api/v1/customers/1/bookings", "booking"),
        ("/api/v1/bookings", "booking"),
        ("/api/v1/venuesX", None),
        ("/internal/v1/events/1/reservations", None),
        ("/api/v1", None),
        ("/api/v2/venues", None),
    ],
)
def test_routes(path: str, upstream: str | None) -> None:
    assert upstream_for(path) == upstream


def test_writes_need_a_permission_reads_do_not() -> None:
    assert permission_for("GET", "inventory") is None
    assert permission_for("head", "booking") is None
    assert permission_for("POST", "inventory") == "inventory:write"
    assert permission_for("DELETE", "booking") == "bookings:write"


def test_rate_limiter_refills_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=2, clock=lambda: now[0])
    assert [limiter.take("a").allowed for _ in range(3)] == [True, True, False]
    refused = limiter.take("a")
    assert refused.headers()["Retry-After"] == "1"
    assert limiter.take("b").allowed  # another client has its own bucket
    now[0] = 0.5
    assert limiter.take("a").allowed
    assert not limiter.take("a").allowed


def test_rate_limiter_forgets_the_oldest_clients_beyond_its_capacity() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_clients=2, clock=lambda: 0.0)
    for client in ("a", "b", "c"):
        assert limiter.take(client).allowed
    assert limiter.take("a").allowed  # "a" was forgotten, so it starts with a full bucket


def scope(**extra: Any) -> Scope:
    value: Any = {
        "type": "http",
        "method": "POST",
        "scheme": "https",
        "path": "/api/v1/bookings",
        "raw_path": b"/api/v1/bookings",
        "query_string": b"",
        "client": ("10.0.0.7", 5555),
        "headers": [
            (b"host", b"tickets.example"),
            (b"authorization", b"Bearer t"),
            (b"connection", b"keep-alive, x-private"),
            (b"x-private", b"secret"),
            (b"keep-alive", b"timeout=5"),
            (b"transfer-encoding", b"chunked"),
            (b"x-forwarded-for", b"203.0.113.9"),
            (b"x-request-id", b"spoofed"),
            (b"content-type", b"application/json"),
        ],
        **extra,
    }
    return cast(Scope, value)


def test_request_headers_drop_hop_by_hop_and_set_forwarding() -> None:
    headers = dict(request_headers(scope()))
    assert headers["authorization"] == "Bearer t"
    assert headers["content-type"] == "application/json"
    for dropped in ("connection", "x-private", "keep-alive", "transfer-encoding", "host"):
        assert dropped not in headers
    assert headers["x-forwarded-for"] == "203.0.113.9, 10.0.0.7"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "tickets.example"
    assert headers["x-request-id"] != "spoofed"  # the gateway's own correlation id


def test_request_headers_refuse_values_outside_ascii() -> None:
    with pytest.raises(InvalidInput):
        request_headers(scope(headers=[(b"x-name", "caf\u00e9".encode())]))


def test_request_headers_drop_expect() -> None:
    headers = dict(request_headers(scope(headers=[(b"expect", b"100-continue")])))
    assert "expect" not in headers


def test_request_headers_drop_a_clients_causation_id() -> None:
    """Only the services name what caused their calls; a client cannot forge an event's cause."""
    headers = dict(request_headers(scope(headers=[(b"x-causation-id", b"forged")])))
    assert "x-causation-id" not in headers


def test_response_headers_drop_hop_by_hop_and_upstream_ids() -> None:
    upstream = [
        (b"content-type", b"application/json"),
        (b"Connection", b"close, x-internal"),
        (b"x-internal", b"1"),
        (b"x-request-id", b"abc"),
        (b"location", b"/api/v1/bookings/1"),
    ]
    kept = {name for name, _ in response_headers(upstream)}
    assert kept == {b"content-type", b"location"}


def test_paths_with_dot_segments_or_encoded_slashes_are_refused() -> None:
    assert decoded_path(scope()) == "/api/v1/bookings"
    for raw in (b"/api/v1/events/../../internal", b"/api/v1/events/%2e%2e/x", b"/api/v1/a%2Fb"):
        assert decoded_path(scope(raw_path=raw)) is None
    assert decoded_path(scope(raw_path="/api/v1/caf\u00e9".encode())) is None
    assert decoded_path(scope(query_string="q=caf\u00e9".encode())) is None
    assert target_of(scope(raw_path=b"/api/v1/events", query_string=b"limit=2")) == (
        "/api/v1/events?limit=2"
    )


def spec(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {"paths": paths, "components": {"schemas": schemas}, "tags": [{"name": "x"}]}


def test_merge_keeps_routed_paths_and_deconflicts_components() -> None:
    ref = {"$ref": "#/components/schemas/Page"}
    merged = merge(
        {
            "inventory": spec(
                {"/api/v1/events": {"get": {"responses": {"200": ref}}}, "/internal/v1/x": {}},
                {"Page": {"type": "object", "title": "events"}, "Venue": {"type": "object"}},
            ),
            "booking": spec(
                {"/api/v1/bookings": {"get": {"responses": {"200": ref}}}},
                {"Page": {"type": "object", "title": "bookings"}, "Venue": {"type": "object"}},
            ),
        },
        token_url="http://idp/token",
    )
    assert set(merged["paths"]) == {"/api/v1/events", "/api/v1/bookings"}
    schemas = merged["components"]["schemas"]
    # the same Venue is shared; Problem documents every error answer
    assert set(schemas) == {"InventoryPage", "BookingPage", "Venue", "Problem"}
    responses = merged["paths"]["/api/v1/events"]["get"]["responses"]
    assert "application/problem+json" in responses["404"]["content"]
    events_ref = merged["paths"]["/api/v1/events"]["get"]["responses"]["200"]["$ref"]
    assert events_ref == "#/components/schemas/InventoryPage"
    bookings_ref = merged["paths"]["/api/v1/bookings"]["get"]["responses"]["200"]["$ref"]
    assert bookings_ref == "#/components/schemas/BookingPage"
    flows = merged["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "http://idp/token"
    assert merged["tags"] == [{"name": "x"}]
