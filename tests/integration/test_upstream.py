"""The client for calls between services, against real sockets: informational answers, a
timeout on the whole answer, connection reuse, and the breaker's bookkeeping when calls are
cancelled or finish late."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from ticketing.shared.breaker import BreakerState, CircuitBreaker
from ticketing.shared.errors import Unavailable
from ticketing.shared.upstream import Lasting, Upstream
from ticketing.shared.upstream_answers import Reply

Answer = Callable[[str, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    """An HTTP/1.1 server on a raw socket whose answers the test writes byte for byte, to send
    what a framework would not (informational answers, a body that never ends)."""

    answer: Answer
    connections: int = 0
    requests: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                target = head.split(" ", 2)[1]
                self.requests.append(head)
                await self.answer(target, writer)
        writer.close()


@contextlib.asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[RawServer]:
    server = RawServer(answer)
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listening.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listening.wait_closed(), 2)


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """Read the state through a call, so that the type checker does not narrow it."""
    return breaker.state


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


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
