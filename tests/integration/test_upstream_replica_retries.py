"""A call that failed at one of an upstream's replicas, against real sockets: a write that may
have arrived is not sent again, a read that timed out is not sent on, and a write whose
connection was never made goes on to the next replica."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest

from tests.integration.replica_servers import answered_by, replicas, upstream
from ticketing.shared.errors import Unavailable
from ticketing.shared.http.upstream import Upstream


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
