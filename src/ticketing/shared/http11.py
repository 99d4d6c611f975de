"""A lean HTTP/1.1 client for calls between services and the gateway's proxy: keep-alive
connections per upstream, parsed by httptools, no per-request scan of the pool (httpx's pool
checks every pooled connection with a syscall on each request, which was most of the gateway's
CPU under load; docs/performance.md).

Connections idle for longer than ``max_idle_seconds`` are dropped rather than reused, well
before the services close them (their keep-alive timeout is 65 s), so a request is never sent on
a connection the upstream is closing and never needs a retry (a retried POST could book twice).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httptools


class UpstreamProtocolError(Exception):
    """The upstream closed the connection or answered something that is not HTTP/1.1."""


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()


@dataclass(slots=True)
class UpstreamResponse:
    """The head of an upstream's answer; the body streams from :meth:`body`."""

    pool: Http11Pool
    connection: _Connection
    head_only: bool
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    _chunks: list[bytes] = field(default_factory=list)
    _head_done: bool = False
    _complete: bool = False
    _parser: httptools.HttpResponseParser | None = None
    _keep_alive: bool = False
    _released: bool = False

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((bytes(name), bytes(value)))

    def on_headers_complete(self) -> None:
        self._head_done = True
        if self.head_only:
            self._complete = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(bytes(body))

    def on_message_complete(self) -> None:
        self._complete = True
        # Only meaningful inside a callback: the parser resets once the message is complete.
        self._keep_alive = self._parser is not None and self._parser.should_keep_alive()

    async def _feed(self) -> None:
        data = await self.connection.reader.read(65536)
        if not data:
            raise UpstreamProtocolError("the upstream closed the connection")
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            raise UpstreamProtocolError(str(error)) from error

    async def read_head(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        while not self._head_done:
            await self._feed()
        self.status = self._parser.get_status_code()

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            while self._chunks:
                yield self._chunks.pop(0)
            if self._complete:
                return
            await self._feed()

    def release(self) -> None:
        """Give the connection back when the exchange completed cleanly, else close it."""
        if self._released:
            return
        self._released = True
        reusable = self._complete and not self.head_only and self._keep_alive
        self.pool.give_back(self.connection, reusable=reusable)


class Http11Pool:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_connections: int = 200,
        max_idle_seconds: float = 30.0,
    ) -> None:
        self._host = host
        self._port = port
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_idle_seconds
        self.opened = 0

    async def request(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> UpstreamResponse:
        """Send one request and read the head of the answer."""
        await self._slots.acquire()
        connection: _Connection | None = None
        try:
            connection = self._take_idle() or await self._connect()
            head = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1")]
            head += [name + b": " + value + b"\r\n" for name, value in headers]
            head.append(f"host: {self._host}:{self._port}\r\n".encode("latin-1"))
            if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                head.append(f"content-length: {len(body)}\r\n".encode("latin-1"))
            connection.writer.write(b"".join(head) + b"\r\n" + body)
            await connection.writer.drain()
            response = UpstreamResponse(self, connection, head_only=method == "HEAD")
            await response.read_head()
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise
        return response

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if now - connection.idle_since < self._max_idle and not connection.reader.at_eof():
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        self.opened += 1
        return _Connection(reader, writer)

    def give_back(self, connection: _Connection, *, reusable: bool) -> None:
        if reusable:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        self._slots.release()

    async def aclose(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
