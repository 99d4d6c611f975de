"""Services run in the test process under uvicorn, and the clients the tests call them with."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import uvicorn
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.processes import free_port
from ticketing.shared.http.serving import CoalescingHttpProtocol
from ticketing.shared.settings import Settings


async def answer_lifespan(receive: Any, send: Any) -> None:
    """The lifespan protocol of a bare ASGI test app: nothing to start or stop."""
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


@contextlib.asynccontextmanager
async def serve(app: Litestar, port: int | None = None) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on ``port`` (default: a free one) on loopback, in this event
    loop; yield its URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http=CoalescingHttpProtocol,  # as ``ticketing serve`` runs every service
        timeout_graceful_shutdown=2,  # open streams and waits end at a stop
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def serve_raw(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    backlog: int = 100,
) -> AsyncIterator[str]:
    """``handle`` serving each connection on a free loopback port, for a server that writes its
    answers byte for byte; yield its URL."""
    listening = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=backlog)
    try:
        yield f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    finally:
        listening.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listening.wait_closed(), 2)


async def until_ready(url: str, seconds: float = 60) -> httpx.Response:
    """Poll ``url``'s ``/health/ready`` until it answers 200; that answer."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client, asyncio.timeout(seconds):
        while True:
            ready = await client.get("/health/ready")
            if ready.status_code == 200:
                return ready
            await asyncio.sleep(0.02)


def chromium_binary() -> str:
    for candidate in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(candidate)
        if found:
            return found
    raise RuntimeError("Chromium is needed for the docs test: apt-get install chromium")


async def render_in_chromium(url: str, budget_ms: int = 15000) -> str:
    """The DOM of ``url`` after its scripts ran, from headless Chromium (loopback only)."""
    import tempfile

    with tempfile.TemporaryDirectory() as profile:
        process = await asyncio.create_subprocess_exec(
            chromium_binary(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    return out.decode("utf-8", "replace")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclasses.dataclass(frozen=True)
class Stack:
    """Inventory, booking and order running in this process against the real infrastructure."""

    settings: Settings
    inventory: httpx.AsyncClient
    booking: httpx.AsyncClient
    order_url: str
    engines: dict[str, AsyncEngine]


@dataclasses.dataclass(frozen=True)
class Gateway:
    url: str
    settings: Settings
    tokens: dict[str, str]

    def client(self, who: str | None = "admin", **kwargs: Any) -> httpx.AsyncClient:
        headers = bearer(self.tokens[who]) if who else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)


def gateway_settings(stack: Stack, **changes: Any) -> Settings:
    changes.setdefault("booking_url", str(stack.booking.base_url).rstrip("/"))
    return dataclasses.replace(stack.settings, **changes)
