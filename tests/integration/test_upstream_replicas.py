"""Calls spread over an upstream's replicas, against real sockets: turns (even when a replica is
passed over), a dead, unready or unreachable replica passed over, a breaker per replica, no write
sent twice, 503 only when none answers, and the readiness watcher's checks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from litestar import Litestar, MediaType, Response, get, post

from tests.harness.processes import free_port
from tests.harness.serving import serve
from ticketing.shared.correlation import correlation_id_bound, current_correlation_id
from ticketing.shared.errors import Unavailable
from ticketing.shared.http.breaker import BreakerState, CircuitBreaker, CircuitOpen
from ticketing.shared.http.replicas import Replica as UpstreamReplica
from ticketing.shared.http.upstream import Upstream


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


@contextlib.contextmanager
def unanswered_port() -> Iterator[str]:
    """An address whose connections never complete: a listener with a full accept queue that
    never accepts drops further handshakes, as a host gone without a reset does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_write_whose_connection_is_never_made_goes_to_the_next_replica() -> None:
    """No connection was made, so the request cannot have arrived: the write may go on, as it
    does when the connection is refused (ADR 15: "a connection that hangs costs the whole
    upstream timeout before the next replica is tried")."""
    with unanswered_port() as hanging:
        async with replicas("b") as ([b], [live]), upstream([hanging, live]) as client:
            assert await answered_by(client, "POST") == "b"  # the first turn is the hanging one
            assert b.seen["POST"] == 1


async def test_turns_stay_even_over_the_replicas_left_when_one_is_passed_over() -> None:
    """With a, b and c and a unready, b and c share the calls: b must not take a's turns too."""
    async with (
        replicas("a", "b", "c") as ([a, _b, _c], urls),
        upstream(urls, ready_every=3600) as client,
    ):
        a.ready = False
        await answered_by(client)  # starts the readiness checks: one round, then an hour
        await until(lambda: not client.replicas[0].ready)
        names = Counter([await answered_by(client) for _ in range(12)])
    assert names == {"b": 6, "c": 6}


class Recording(Upstream):
    """An upstream that notes the correlation id its readiness checks run under."""

    seen: list[str | None]

    async def _check(self, replica: UpstreamReplica) -> None:
        self.seen.append(current_correlation_id())
        await super()._check(replica)


@contextlib.asynccontextmanager
async def recording(urls: list[str]) -> AsyncIterator[Recording]:
    client = Recording("svc", urls, timeout=2.0, ready_every=0.05)
    client.seen = []
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_readiness_checks_do_not_log_under_the_first_callers_correlation_id() -> None:
    """The checks run for the upstream's whole life: their log lines belong to no request, not
    to whichever request happened to make the first call."""
    async with replicas("a", "b") as (_, urls), recording(urls) as client:
        with correlation_id_bound("first-request"):
            await answered_by(client)
        await until(lambda: len(client.seen) >= 4)
    assert set(client.seen) == {None}


async def test_a_readiness_probe_answers_ready_when_one_replica_is_ready() -> None:
    """The gateway's readiness asks each upstream through probe(): an unready replica's 503
    must not stand for the upstream while another replica is ready."""
    async with replicas("a", "b") as ([a, _b], urls), upstream(urls) as client:
        a.ready = False
        answers = [(await client.probe("/health/ready")).status_code for _ in range(2)]
    assert answers == [200, 200]
