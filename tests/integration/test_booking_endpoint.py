"""POST /api/v1/bookings, served as a bare ASGI route, keeps the contract of a Litestar handler:
the documented operation, the same refusals (problem+json, nothing written), lax decoding,
the methods it allows (real MariaDB, real services over HTTP)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from tests.harness.serving import Stack
from tests.integration.flow import setup_sale
from ticketing.booking.tables import bookings, idempotency_keys

PROBLEM = "application/problem+json"


async def written(stack: Stack) -> tuple[int, int]:
    async with stack.engines["booking"].connect() as conn:
        made = await conn.scalar(select(func.count()).select_from(bookings))
        keys = await conn.scalar(select(func.count()).select_from(idempotency_keys))
    return int(made or 0), int(keys or 0)


@pytest.mark.parametrize(
    ("content", "headers", "status", "field"),
    [
        (b'{"customer_id": "C", "event_id": "E", "ticket_count": 1', {}, 400, None),
        (b"", {}, 400, "body"),
        (b"null", {}, 400, None),
        (b"\xff\xfe not utf-8", {}, 400, None),
        (b'{"customer_id": "C", "event_id": "E", "ticket_count": "many"}', {}, 400, "ticket_count"),
        (b'{"customer_id": "C", "event_id": "E", "ticket_count": 0}', {}, 400, "ticket_count"),
        (b'{"customer_id": "C", "event_id": "not-a-uuid", "ticket_count": 1}', {}, 400, "event_id"),
        (b'{"customer_id": "C", "event_id": "E"}', {}, 400, None),
        (
            b'{"customer_id": "C", "event_id": "E", "ticket_count": 1}',
            {"Idempotency-Key": "k" * 256},
            400,
            "Idempotency-Key",
        ),
        (
            b'{"customer_id": "C", "event_id": "E", "ticket_count": 1, "pad": "'
            + b"x" * 70_000
            + b'"}',
            {},
            413,
            None,
        ),
    ],
    ids=[
        "truncated",
        "empty",
        "null",
        "invalid-utf8",
        "wrong-type",
        "zero-tickets",
        "bad-uuid",
        "missing-field",
        "long-idempotency-key",
        "too-large",
    ],
)
async def test_bad_requests_are_refused_as_problems_and_write_nothing(
    stack: Stack, content: bytes, headers: dict[str, str], status: int, field: str | None
) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=5)
    content = content.replace(b'"C"', f'"{customer_id}"'.encode())
    content = content.replace(b'"E"', f'"{event_id}"'.encode())
    before = await written(stack)
    response = await stack.booking.post(
        "/api/v1/bookings",
        content=content,
        headers={"Content-Type": "application/json", **headers},
    )
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == PROBLEM
    if field is not None:
        assert field in {error["field"] for error in response.json()["errors"]}, response.text
    assert await written(stack) == before


async def test_a_number_in_a_string_is_taken_as_litestar_takes_it(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=5)
    response = await stack.booking.post(
        "/api/v1/bookings",
        json={"customer_id": customer_id, "event_id": event_id, "ticket_count": "2"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["ticket_count"] == 2


async def test_only_post_is_served_and_options_says_so(stack: Stack) -> None:
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        response = await stack.booking.request(method, "/api/v1/bookings")
        assert response.status_code == 405, method
        assert response.headers["content-type"] == PROBLEM
        assert "POST" in response.headers["allow"]
    options = await stack.booking.request("OPTIONS", "/api/v1/bookings")
    assert options.status_code == 204
    assert {m.strip() for m in options.headers["allow"].split(",")} == {"OPTIONS", "POST"}


async def test_an_unknown_customer_is_404_and_writes_nothing(stack: Stack) -> None:
    _, event_id = await setup_sale(stack, capacity=5)
    before = await written(stack)
    response = await stack.booking.post(
        "/api/v1/bookings",
        json={"customer_id": str(uuid.uuid4()), "event_id": event_id, "ticket_count": 1},
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert await written(stack) == before


async def test_the_operation_is_documented_with_its_body_and_header(stack: Stack) -> None:
    schema = (await stack.booking.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/api/v1/bookings"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BookingCreate"
    }
    assert "BookingCreate" in schema["components"]["schemas"]
    assert [p["name"] for p in operation["parameters"]] == ["Idempotency-Key"]
    assert "202" in operation["responses"]
