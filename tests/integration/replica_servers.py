"""Replicas of an upstream on real sockets whose readiness and answers a test sets, and the
upstream client that spreads calls over them."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from litestar import Litestar, MediaType, Response, get, post

from tests.harness.serving import serve
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


async def answered_by(client: Upstream, method: str = "GET") -> str:
    path = "/who" if method == "GET" else "/write"
    return (await client.request(method, path)).text
