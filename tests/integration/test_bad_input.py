"""Hostile and broken requests through the gateway: a clear 4xx, nothing written, the services
stay up."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from tests.harness.serving import Gateway, Stack
from ticketing.inventory.tables import venues

PROBLEM = "application/problem+json"


async def venue_count(stack: Stack) -> int:
    async with stack.engines["inventory"].connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(venues)) or 0)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"name": "x", "address": "y", "total_capacity": 5', "application/json"),
        (b"\xff\xfe\xfa not utf-8", "application/json"),
        (b'{"name": "\xed\xa0\x80", "address": "y", "total_capacity": 5}', "application/json"),
        (b"name=x&address=y&total_capacity=5", "application/x-www-form-urlencoded"),
        (b"<venue/>", "application/xml"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"name": "x", "address": "y", "total_capacity": 5, "name": 7}', "application/json"),
        (b'{"name": "x", "address": "y", "total_capacity": 1e400}', "application/json"),
        (b"", "application/json"),
        (b"null", "application/json"),
    ],
    ids=[
        "truncated",
        "invalid-utf8",
        "lone-surrogate",
        "form",
        "xml",
        "deep-nesting",
        "duplicate-key",
        "huge-number",
        "empty",
        "null",
    ],
)
async def test_broken_bodies_are_4xx_and_write_nothing(
    gateway: Gateway, stack: Stack, content: bytes, content_type: str
) -> None:
    before = await venue_count(stack)
    async with gateway.client("admin") as admin:
        response = await admin.post(
            "/api/v1/venues", content=content, headers={"Content-Type": content_type}
        )
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
        assert response.headers["content-type"] == PROBLEM
        assert (await admin.get("/health/live")).status_code == 200
    assert await venue_count(stack) == before


async def test_huge_headers_are_refused_and_the_gateway_stays_up(gateway: Gateway) -> None:
    async with gateway.client("admin") as admin:
        try:
            response = await admin.get("/api/v1/events", headers={"X-Padding": "x" * 200_000})
            assert 400 <= response.status_code < 500
        except httpx.RemoteProtocolError:
            pass  # the server may simply close the connection: also a refusal
        assert (await admin.get("/api/v1/events")).status_code == 200


async def test_a_slow_client_does_not_block_others(gateway: Gateway) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"POST /api/v1/venues HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n")
        await writer.drain()
        async with gateway.client("admin") as admin:
            for _ in range(5):
                writer.write(b"X-Slow: 1\r\n")  # a header a while, never finishing
                await writer.drain()
                started = asyncio.get_running_loop().time()
                assert (await admin.get("/api/v1/events")).status_code == 200
                assert asyncio.get_running_loop().time() - started < 2
                await asyncio.sleep(0.2)
    finally:
        writer.close()
        await writer.wait_closed()
    del reader


async def test_garbage_ids_and_methods(gateway: Gateway) -> None:
    async with gateway.client("admin") as admin:
        for path in (
            "/api/v1/events/%00",
            "/api/v1/events/" + "9" * 5000,
            f"/api/v1/bookings/{uuid.uuid4()}x",
        ):
            response = await admin.get(path)
            assert 400 <= response.status_code < 500, path
        response = await admin.request("PATCH", "/api/v1/venues")
        assert response.status_code == 405
        assert response.headers["content-type"] == PROBLEM


async def test_every_method_needs_a_token(gateway: Gateway, stack: Stack) -> None:
    methods = ("OPTIONS", "HEAD", "GET", "DELETE", "PUT", "POST")
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        for method in methods:  # the gateway proxies every method: all need a token
            response = await anonymous.request(method, "/api/v1/bookings")
            assert response.status_code == 401, method
    async with httpx.AsyncClient(base_url=str(stack.booking.base_url)) as anonymous:
        for method in methods:  # a service: 401, or 405 for a method the path does not serve
            response = await anonymous.request(method, "/api/v1/bookings")
            assert response.status_code in (401, 405), method
    async with gateway.client("admin") as admin:
        response = await admin.request("OPTIONS", "/api/v1/venues")
        assert response.status_code < 500
