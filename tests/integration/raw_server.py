"""An HTTP/1.1 server on a raw socket whose answers the test writes byte for byte, to send what a
framework would not (informational answers, a body that never ends)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from tests.harness.serving import serve_raw

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
    async with serve_raw(server.handle) as server.url:
        yield server


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
