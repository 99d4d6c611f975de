"""An upstream on a raw socket that holds its answers as booking's status push does (long-polls
and event streams), notes when the gateway hangs up on it, and a raw client that can leave
mid-answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

UPSTREAM_HEARTBEAT = 0.2  # how often the fake upstream's live streams send one


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def event(number: int) -> bytes:
    return b'id: %d\nevent: booking\ndata: {"n": %d}\n\n' % (number, number)


@dataclass
class FakeBooking:
    """Answers ``GET /api/v1/bookings/<seconds>`` after that many seconds, and streams
    ``/api/v1/customers/<mode>/bookings/stream``: a first event at once, then one more each
    time ``go`` is set, with heartbeats in between unless the mode is ``quiet``. An id
    ``refuse-<status>`` is refused with that status; ``failing`` makes every answer a 500.
    ``left`` lists the targets whose connection the gateway closed while they were held."""

    url: str = ""
    failing: bool = False
    go: asyncio.Event = field(default_factory=asyncio.Event)
    left: list[str] = field(default_factory=list)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    first_event_sent: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                if not await self.answer(target, reader, writer):
                    self.left.append(target)
                    self.hung_up.set()
                    break
        writer.close()

    async def answer(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer ``target``; False when the gateway hung up before the answer was over."""
        path = urlsplit(target).path
        parts = path.split("/")
        key = parts[4] if len(parts) > 4 else ""
        if path == "/health/ready":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        elif self.failing:
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
        elif key.startswith("refuse-"):
            body = json.dumps({"title": "refused", "status": key[7:]}).encode()
            writer.write(
                b"HTTP/1.1 %s Refused\r\ncontent-type: application/problem+json\r\n"
                b"retry-after: 7\r\ncontent-length: %d\r\n\r\n%s"
                % (key[7:].encode(), len(body), body)
            )
        elif path.startswith("/api/v1/bookings/"):
            if await hangs_up_within(reader, float(key)):
                return False
            body = json.dumps({"id": key, "status": "CONFIRMED"}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
        elif path.endswith("/bookings/stream"):
            return await self.stream(key, reader, writer)
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        return True

    async def stream(
        self, mode: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(event(1))
        )
        await writer.drain()
        self.first_event_sent.set()
        hang_up = asyncio.ensure_future(reader.read(1))  # b"" once the gateway closed
        number = 1
        try:
            while True:
                go = asyncio.ensure_future(self.go.wait())
                heartbeat = None if mode == "quiet" else UPSTREAM_HEARTBEAT
                await asyncio.wait({hang_up, go}, timeout=heartbeat, return_when="FIRST_COMPLETED")
                go.cancel()
                if hang_up.done():
                    return False
                if self.go.is_set():
                    self.go.clear()
                    number += 1
                    writer.write(chunk(event(number)))
                else:
                    writer.write(chunk(b": heartbeat\n\n"))
                await writer.drain()
        finally:
            hang_up.cancel()


async def hangs_up_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the peer closed the connection within ``seconds`` (else the time passed)."""
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False


async def raw_get(url: str, target: str, token: str) -> tuple[Any, asyncio.StreamWriter]:
    """Send ``GET target`` on a connection of its own, to close it at a moment of the test's
    choosing."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
        f"authorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer
