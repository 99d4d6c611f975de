"""Calls spread over an upstream's replicas, against real sockets: turns, a dead or unready
replica passed over, a breaker per replica, no write sent twice, 503 only when none answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from litestar import Litestar, MediaType, Response, get, post

from tests.harness import free_port, serve
from ticketing.shared.breaker import BreakerState, CircuitBreaker, CircuitOpen
from ticketing.shared.errors import Unavailable
from ticketing.shared.replicas import Replica as UpstreamReplica
from ticketing.shared.upstream import Upstream


@dataclass
class Replica:
    """A replica whose readiness and answers the test sets; it counts what reached it."""

    name: str
    ready: bool = True
    status: int = 200
    delay: float = 0.0
    seen: Counter[str] = field(default_factory=Counter)

    def app(self) -> Litestar:
        @get("/health/ready", media_type=MediaType.TEXT)
        async def ready() -> Response[str]:
            return Response("", status_code=200 if self.ready else 503)

        @get("/who", media_type=MediaType.TEXT)
        async def who() -> Response[str]:
            self.seen["GET"] += 1
            await asyncio.sleep(self.delay)
            return Response(self.name, status_code=self.status)

        @post("/write", media_type=MediaType.TEXT)
        async def write() -> Response[str]:
            self.seen["POST"] += 1
            return Response(self.name, status_code=self.status)

        return Litestar([ready, who, write])


@contextlib.asynccontextmanager
async def replicas(*names: str) -> AsyncIterator[tuple[list[Replica], list[str]]]:
    started = [Replica(name) for name in names]
    async with contextlib.AsyncExitStack() as stack:
        urls = [await stack.enter_async_context(serve(r.app())) for r in started]
        yield started, urls


@contextlib.asynccontextmanager
async def upstream(urls: list[str], **options: object) -> AsyncIterator[Upstream]:
    client = Upstream("svc", urls, timeout=2.0, **options)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.aclose()


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Until the background readiness checks have brought ``condition`` about."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def answered_by(client: Upstream, method: str = "GET") -> str:
    path = "/who" if method == "GET" else "/write"
    return (await client.request(method, path)).text


async def test_calls_take_turns_over_the_replicas() -> None:
    async with replicas("a", "b", "c") as (_, urls), upstream(urls) as client:
        names = [await answered_by(client) for _ in range(6)]
    assert Counter(names) == {"a": 2, "b": 2, "c": 2}


async def test_a_dead_replica_is_passed_over_for_reads_and_writes() -> None:
    async with replicas("a") as ([a], [live]), upstream([dead_url(), live]) as client:
        names = [await answered_by(client, method) for method in ("POST", "GET") * 4]
        assert names == ["a"] * 8
        assert a.seen == {"POST": 4, "GET": 4}  # each write reached a replica exactly once
        dead_replica = client.replicas[0]
        assert dead_replica.ready is False  # passed over until its check passes again


async def test_an_unready_replica_gets_no_calls_while_another_is_ready() -> None:
    async with replicas("a", "b") as ([a, _b], urls), upstream(urls, ready_every=0.05) as client:
        a.ready = False
        await answered_by(client)  # starts the readiness checks
        await until(lambda: not client.replicas[0].ready)
        before = a.seen["GET"]
        names = [await answered_by(client) for _ in range(6)]
        assert names == ["b"] * 6
        assert a.seen["GET"] == before
        a.ready = True
        await until(lambda: client.replicas[0].ready)
        names = [await answered_by(client) for _ in range(6)]
        assert Counter(names) == {"a": 3, "b": 3}  # back in turn once ready again


async def test_when_no_replica_is_ready_the_unready_ones_are_still_tried() -> None:
    async with replicas("a", "b") as ([a, b], urls), upstream(urls, ready_every=0.05) as client:
        a.ready = b.ready = False  # a stale or strict check must not stop calls that can succeed
        await answered_by(client)
        await until(lambda: not any(r.ready for r in client.replicas))
        assert {await answered_by(client) for _ in range(4)} == {"a", "b"}


async def test_each_replica_has_its_own_breaker() -> None:
    def breakers(name: str) -> CircuitBreaker:
        return CircuitBreaker(name, window=4, min_calls=2, open_seconds=30)

    async with replicas("a", "b") as ([a, _b], urls), upstream(urls, breakers=breakers) as client:
        a.status = 500
        failures = 0
        for _ in range(8):
            try:
                assert await answered_by(client) == "b"
            except Unavailable:
                failures += 1  # a 5xx is the replica's answer: the call is not sent again
        assert failures == 2  # then a's breaker opened and only b was called
        states = [r.breaker.state for r in client.replicas]
        assert states == [BreakerState.OPEN, BreakerState.CLOSED]
        assert [r.breaker.name for r in client.replicas] == ["svc[0]", "svc[1]"]
        assert [await answered_by(client, "POST") for _ in range(3)] == ["b"] * 3


async def test_the_refusal_comes_only_when_every_replica_refuses() -> None:
    def breakers(name: str) -> CircuitBreaker:
        return CircuitBreaker(name, window=2, min_calls=1, open_seconds=30)

    async with upstream([dead_url(), dead_url()], breakers=breakers) as client:
        with pytest.raises(Unavailable) as first:
            await answered_by(client)
        assert not isinstance(first.value, CircuitOpen)  # both were tried, both refused
        assert [r.breaker.state for r in client.replicas] == [BreakerState.OPEN] * 2
        with pytest.raises(CircuitOpen) as refused:
            await answered_by(client, "POST")
        assert refused.value.extensions["retry_after"] >= 25


async def test_a_write_whose_connection_broke_after_sending_is_not_sent_again() -> None:
    """The first replica reads the request and drops the connection: it may have acted on it,
    so a write fails rather than risk a second effect; a read goes on to the next replica."""
    received: list[bytes] = []

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"GET /health/"):
            received.append(head)
        writer.transport.abort()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    dropping = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with replicas("b") as ([b], [live]), upstream([dropping, live]) as client:
            with pytest.raises(Unavailable):
                await answered_by(client, "POST")
            assert b.seen["POST"] == 0
            assert len(received) == 1
            # Two reads: one of them starts at the dropping replica and goes on to b.
            assert [await answered_by(client, "GET") for _ in range(2)] == ["b", "b"]
            assert b.seen["GET"] == 2
            assert sum(head.startswith(b"POST") for head in received) == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_a_read_that_timed_out_is_not_sent_to_the_next_replica() -> None:
    """A slow replica's timeout is the caller's answer: sending the read on would make the
    caller wait a timeout per replica, and load the others when all are slow."""
    async with replicas("a", "b") as ([a, b], urls):
        a.delay = 5
        client = Upstream("svc", urls, timeout=0.5)
        try:
            with pytest.raises(Unavailable):
                await answered_by(client)  # the first call starts at a
            assert b.seen["GET"] == 0
        finally:
            await client.aclose()


class FailingOnce(Upstream):
    """An upstream whose first readiness check of each replica fails in an unexpected way."""

    failed: set[str]

    async def _check(self, replica: UpstreamReplica) -> None:
        if replica.url not in self.failed:
            self.failed.add(replica.url)
            raise ValueError("an unexpected failure in a check")
        await super()._check(replica)


async def test_a_check_that_fails_unexpectedly_does_not_stop_the_checks() -> None:
    async with replicas("a", "b") as ([a, _b], urls):
        client = FailingOnce("svc", urls, timeout=2.0, ready_every=0.05)
        client.failed = set()
        try:
            a.ready = False
            await answered_by(client)
            await until(lambda: not client.replicas[0].ready)
            assert client.failed == set(urls)
        finally:
            await client.aclose()  # and closing raises nothing
