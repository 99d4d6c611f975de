"""Review of calls spread over replicas: cases the first tests left out (a connection that
never completes, turns with a replica passed over, the readiness watcher's log context, a
readiness probe answered by an unready replica)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator

from tests.integration.test_upstream_replicas import answered_by, replicas, upstream
from ticketing.shared.observability import correlation_id_bound, current_correlation_id
from ticketing.shared.replicas import Replica
from ticketing.shared.upstream import Upstream


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


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


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

    async def _check(self, replica: Replica) -> None:
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
