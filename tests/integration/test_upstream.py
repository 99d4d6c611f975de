"""The client for calls between services, against real sockets: informational answers, a
timeout on the whole answer, connection reuse, stray bytes that never become an answer, the
target sent as the caller wrote it, and timeouts of an exchange's own."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.integration.raw_server import RawServer, ok, raw_server
from ticketing.shared.errors import Unavailable
from ticketing.shared.http.upstream import Upstream
from ticketing.shared.http.upstream_answers import Reply


async def echo_target(target: str, writer: asyncio.StreamWriter) -> None:
    writer.write(ok(target.encode()))
    await writer.drain()


async def test_informational_answers_are_skipped_and_the_connection_stays_in_step() -> None:
    async def informational_first(target: str, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)  # the final answer in a segment of its own
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        await echo_target(target, writer)

    async with raw_server(informational_first) as server:
        upstream = Upstream("test", server.url, timeout=5)
        try:
            for index in range(5):
                reply = await upstream.request("GET", f"/item/{index}")
                assert (reply.status_code, reply.content) == (200, f"/item/{index}".encode())
        finally:
            await upstream.aclose()
        assert server.connections == 1


async def test_keep_alive_connections_are_reused() -> None:
    async with raw_server(echo_target) as server:
        upstream = Upstream("test", server.url, timeout=5)
        try:
            replies = await asyncio.gather(*(upstream.request("GET", f"/{i}") for i in range(20)))
            assert [r.content for r in replies] == [f"/{i}".encode() for i in range(20)]
            for i in range(20):
                assert (await upstream.request("POST", "/p", content=b"x" * i)).content == b"/p"
        finally:
            await upstream.aclose()
        assert server.connections <= 20
        assert len(server.requests) == 40
        # Nothing is added behind the caller's back, such as a Content-Type for the POSTs.
        assert all("content-type" not in head.lower() for head in server.requests)


async def test_a_body_that_never_ends_is_cut_at_the_timeout() -> None:
    async def endless(target: str, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(300):
            writer.write(b"1\r\nx\r\n")  # one byte of ``target``'s endless body
            await writer.drain()
            await asyncio.sleep(0.05)

    async with raw_server(endless) as server:
        upstream = Upstream("test", server.url, timeout=0.5)
        try:
            async with asyncio.timeout(5):  # the server would stream for 15 s
                with pytest.raises(Unavailable):
                    await upstream.request("GET", "/endless")
        finally:
            await upstream.aclose()


async def each_later_request_gets_its_own_answer(server: RawServer) -> Reply:
    """GET /first, let whatever the server sends after it arrive, then check that each of four
    requests gets its own answer; the answer to /first."""
    upstream = Upstream("test", server.url, timeout=5)
    try:
        first = await upstream.request("GET", "/first")
        await asyncio.sleep(0.2)
        for index in range(4):
            reply = await upstream.request("GET", f"/customer-{index}")
            assert reply.content == f"/customer-{index}".encode()
    finally:
        await upstream.aclose()
    return first


async def test_bytes_after_a_bodiless_answer_never_reach_the_next_request() -> None:
    """A 204 whose (illegal) body arrives in a later segment put the pooled connection out of
    step: every later request on it got the answer of the request before it."""

    async def misframed(target: str, writer: asyncio.StreamWriter) -> None:
        if target == "/first":
            stray = ok(b"for-nobody")
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: %d\r\n\r\n" % len(stray))
            await writer.drain()
            await asyncio.sleep(0.05)  # as uvicorn writes an app's start and body: two writes
            writer.write(stray)
        else:
            writer.write(ok(target.encode()))
        await writer.drain()

    async with raw_server(misframed) as server:
        first = await each_later_request_gets_its_own_answer(server)
        assert first.status_code == 204


async def test_stray_bytes_on_an_idle_pooled_connection_never_become_an_answer() -> None:
    """An upstream that writes more than it framed, after the answer was complete: the pool
    must not hand that connection out again (aiohttp would queue the bytes as the next answer)."""

    async def too_much(target: str, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(target.encode()))
        await writer.drain()
        if target == "/first":
            await asyncio.sleep(0.05)
            writer.write(ok(b"stray"))
            await writer.drain()

    async with raw_server(too_much) as server:
        first = await each_later_request_gets_its_own_answer(server)
        assert first.content == b"/first"


async def test_the_target_goes_upstream_as_the_caller_wrote_it() -> None:
    async with raw_server(echo_target) as server:
        upstream = Upstream("test", server.url, timeout=5)
        try:
            for target in ("/a/%7e%41?q=%e9&x=a+b", "/b/%2F%2e%2E"):
                assert (await upstream.request("GET", target)).content == target.encode()
        finally:
            await upstream.aclose()
        assert all("content-type" not in head.lower() for head in server.requests)


async def test_an_exchange_with_timeouts_of_its_own_may_outlast_the_usual_one() -> None:
    async def late(_target: str, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.8)
        writer.write(ok(b"late"))
        await writer.drain()

    async with raw_server(late) as server:
        upstream = Upstream("test", server.url, timeout=0.4)
        try:
            with pytest.raises(Unavailable):
                await upstream.request("GET", "/usual")  # no timeouts given: the upstream's
            waiting = aiohttp.ClientTimeout(total=2)
            async with upstream.open("GET", "/waiting", [], b"", timeouts=waiting) as answer:
                assert b"".join([chunk async for chunk in answer.body()]) == b"late"
        finally:
            await upstream.aclose()


async def test_a_read_timeout_lets_a_live_answer_run_and_cuts_a_silent_one() -> None:
    async def trickles_then_stalls(_target: str, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(8):  # past the upstream's whole-exchange timeout
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.15)
        await asyncio.sleep(10)

    async with raw_server(trickles_then_stalls) as server:
        upstream = Upstream("test", server.url, timeout=0.4)
        endless = aiohttp.ClientTimeout(total=None, sock_read=0.5)
        received = b""
        started = time.monotonic()
        try:
            with pytest.raises(Unavailable):  # noqa: PT012 - the read is what fails
                async with upstream.open("GET", "/s", [], b"", timeouts=endless) as answer:
                    async for chunk in answer.body():
                        received += chunk
        finally:
            await upstream.aclose()
        assert received == b"x" * 8
        assert 1.5 < time.monotonic() - started < 4
