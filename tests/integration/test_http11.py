"""The lean HTTP/1.1 client against a real server: keep-alive reuse, idle expiry, bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar, Request, get, post
from litestar.response import Stream

from tests.harness import serve
from ticketing.shared.http11 import Http11Pool


@get("/small", sync_to_thread=False)
def small() -> dict[str, str]:
    return {"hello": "world"}


@get("/stream")
async def stream() -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        for index in range(50):
            yield b"x" * 1000 + str(index).encode()

    return Stream(chunks())


@post("/echo", status_code=200)
async def echo(request: Request[Any, Any, Any]) -> bytes:
    return await request.body()


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, int]]:
    async with serve(Litestar([small, stream, echo])) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


async def fetch(pool: Http11Pool, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    response = await pool.request(method, target, [(b"content-type", b"application/json")], body)
    try:
        return response.status, b"".join([chunk async for chunk in response.body()])
    finally:
        response.release()


async def test_connections_are_kept_alive_and_reused(server: tuple[str, int]) -> None:
    pool = Http11Pool(*server)
    for _ in range(5):
        assert await fetch(pool, "GET", "/small") == (200, b'{"hello":"world"}')
    assert pool.opened == 1
    status, body = await fetch(pool, "GET", "/stream")  # chunked transfer encoding
    assert status == 200
    assert len(body) == sum(1000 + len(str(i)) for i in range(50))
    assert await fetch(pool, "POST", "/echo", b"\x00\xffbinary") == (200, b"\x00\xffbinary")
    assert pool.opened == 1
    await pool.aclose()


async def test_idle_connections_expire_and_head_is_not_reused(server: tuple[str, int]) -> None:
    pool = Http11Pool(*server, max_idle_seconds=0.2)
    await fetch(pool, "GET", "/small")
    await asyncio.sleep(0.3)
    await fetch(pool, "GET", "/small")
    assert pool.opened == 2  # the idle one was dropped, not reused
    status, body = await fetch(pool, "HEAD", "/small")
    assert body == b""
    await fetch(pool, "GET", "/small")
    assert pool.opened == 3  # after a HEAD the connection is closed, never reused
    del status
    await pool.aclose()


async def test_concurrent_requests_open_at_most_the_limit(server: tuple[str, int]) -> None:
    pool = Http11Pool(*server, max_connections=4)
    answers = await asyncio.gather(*(fetch(pool, "GET", "/stream") for _ in range(20)))
    assert {status for status, _ in answers} == {200}
    assert pool.opened <= 4
    await pool.aclose()
