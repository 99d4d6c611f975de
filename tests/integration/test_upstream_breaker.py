"""The breaker's bookkeeping of calls between services, against real sockets: a half-open probe
cancelled or finishing late, a caller too slow for the timeout, and answers judged by their head."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.integration.raw_server import Answer, ok, raw_server
from ticketing.shared.errors import Unavailable
from ticketing.shared.http.breaker import BreakerState, CircuitBreaker
from ticketing.shared.http.upstream import Lasting, Upstream


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """Read the state through a call, so that the type checker does not narrow it."""
    return breaker.state


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_cancelled_half_open_probe_frees_its_slot() -> None:
    release = asyncio.Event()

    async def held(target: str, writer: asyncio.StreamWriter) -> None:
        if target == "/fail":
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
        else:
            await release.wait()
            writer.write(ok(b"late"))
        await writer.drain()

    clock = Clock()
    breaker = CircuitBreaker("test", open_seconds=5, half_open_probes=1, clock=clock)
    async with raw_server(held) as server:
        upstream = Upstream("test", server.url, timeout=5, breakers=lambda _: breaker)
        try:
            for _ in range(4):
                with pytest.raises(Unavailable):
                    await upstream.request("GET", "/fail")
            assert state_of(breaker) is BreakerState.OPEN
            clock.now = 5.0
            probe = asyncio.create_task(upstream.request("GET", "/held"))
            await asyncio.sleep(0.1)
            probe.cancel()  # the caller went away while its probe waited for an answer
            with contextlib.suppress(asyncio.CancelledError):
                await probe
            release.set()
            reply = await upstream.request("GET", "/now")  # refused for ever before the fix
            assert reply.status_code == 200
            assert state_of(breaker) is BreakerState.CLOSED
        finally:
            release.set()
            await upstream.aclose()


async def test_a_success_admitted_before_the_breaker_opened_does_not_close_it() -> None:
    release = asyncio.Event()

    async def slow_or_failing(target: str, writer: asyncio.StreamWriter) -> None:
        if target == "/slow":
            await release.wait()
            writer.write(ok(b"late"))
        else:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()

    clock = Clock()
    breaker = CircuitBreaker("test", open_seconds=5, half_open_probes=1, clock=clock)
    async with raw_server(slow_or_failing) as server:
        upstream = Upstream("test", server.url, timeout=30, breakers=lambda _: breaker)
        try:
            early = asyncio.create_task(upstream.request("GET", "/slow"))  # admitted while closed
            await asyncio.sleep(0.1)
            for _ in range(4):
                with pytest.raises(Unavailable):
                    await upstream.request("GET", "/fail")
            assert state_of(breaker) is BreakerState.OPEN
            clock.now = 5.0
            assert state_of(breaker) is BreakerState.HALF_OPEN
            release.set()
            assert (await early).status_code == 200
            # That success says nothing about the upstream now: only a probe may close it.
            assert state_of(breaker) is BreakerState.HALF_OPEN
        finally:
            release.set()
            await upstream.aclose()


async def test_a_caller_too_slow_for_the_timeout_does_not_fail_a_healthy_upstream() -> None:
    payload = b"x" * 8_000_000  # more than the sockets' and aiohttp's buffers hold

    async def whole(_target: str, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(payload))  # the upstream answers at once, whole
        await writer.drain()

    breaker = CircuitBreaker("test", window=4, min_calls=2, failure_ratio=0.5)
    async with raw_server(whole) as server:
        upstream = Upstream("test", server.url, timeout=1.0, breakers=lambda _: breaker)

        async def slow_reader() -> None:
            async with upstream.open("GET", "/big", [], b"") as answer:
                async for _ in answer.body():
                    await asyncio.sleep(0.3)  # a caller on a slow link

        try:
            for _ in range(3):
                with pytest.raises(Unavailable):
                    await slow_reader()
            assert state_of(breaker) is BreakerState.CLOSED
        finally:
            await upstream.aclose()


def stream_server(release: asyncio.Event) -> Answer:
    """``/fail``: a 500; ``/stream-<status>``: a chunked answer with that status whose body
    ends once ``release`` is set; ``/broken``: a body cut off by the closed connection."""

    async def answer(target: str, writer: asyncio.StreamWriter) -> None:
        if target == "/fail":
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
        elif target.startswith("/stream-"):
            status = target.removeprefix("/stream-").encode()
            writer.write(b"HTTP/1.1 %s X\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n" % status)
            await writer.drain()
            await release.wait()
            writer.write(b"0\r\n\r\n")
        elif target == "/broken":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nx")
            await writer.drain()
            writer.close()
        else:
            writer.write(ok(b"ok"))
        await writer.drain()

    return answer


async def test_an_answer_judged_by_its_head_settles_a_half_open_breaker_at_once() -> None:
    release = asyncio.Event()
    clock = Clock()
    breaker = CircuitBreaker("test", open_seconds=5, half_open_probes=1, clock=clock)
    async with raw_server(stream_server(release)) as server:
        upstream = Upstream("test", server.url, timeout=5, breakers=lambda _: breaker)
        try:
            for _ in range(4):
                with pytest.raises(Unavailable):
                    await upstream.request("GET", "/fail")
            clock.now = 5.0
            assert state_of(breaker) is BreakerState.HALF_OPEN
            async with upstream.open("GET", "/stream-200", [], b"", lasting=Lasting.STREAM) as ok_:
                assert ok_.status == 200
                # The probe succeeded with its head: the stream holds no slot while it lasts.
                assert state_of(breaker) is BreakerState.CLOSED
                assert (await upstream.request("GET", "/other")).status_code == 200
                release.set()
            for _ in range(4):
                with pytest.raises(Unavailable):
                    await upstream.request("GET", "/fail")
            clock.now = 10.0
            release.clear()
            async with upstream.open("GET", "/stream-503", [], b"", lasting=Lasting.STREAM) as bad:
                assert bad.status == 503
                assert state_of(breaker) is BreakerState.OPEN  # failed with its head
                release.set()
        finally:
            release.set()
            await upstream.aclose()


@pytest.mark.parametrize(("lasting", "after"), [(Lasting.STREAM, "closed"), (None, "open")])
async def test_the_end_of_an_answer_judged_by_its_head_says_nothing(
    lasting: Lasting | None, after: str
) -> None:
    breaker = CircuitBreaker("test", window=1, min_calls=1, failure_ratio=0.5)
    async with raw_server(stream_server(asyncio.Event())) as server:
        upstream = Upstream("test", server.url, timeout=5, breakers=lambda _: breaker)
        try:
            with pytest.raises(Unavailable):  # noqa: PT012 - the read is what fails
                async with upstream.open("GET", "/broken", [], b"", lasting=lasting) as answer:
                    async for _ in answer.body():
                        pass
        finally:
            await upstream.aclose()
    assert state_of(breaker).value == after
