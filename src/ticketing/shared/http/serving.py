"""How every HTTP app is served: uvicorn with one write per response, a settled heap, and the
timeouts a stop and a keep-alive need, so that `ticketing serve` and the tests' servers run alike.
"""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING, Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from litestar import Litestar

    from ticketing.shared.settings import ServiceName

# The collector runs far less often than Python's default: most objects of a running service
# live as long as the process, and walking them again and again cost more than the cycles it
# frees a little later (ADR 8).
GC_THRESHOLDS = (20_000, 20, 20)
# Open booking streams and waits never end on their own: a stop closes them after this, well
# within the dev supervisor's and Kubernetes' grace before a kill.
GRACEFUL_SHUTDOWN_SECONDS = 5
# Longer than clients' and proxies' idle timeouts, so that no reused connection races a close.
KEEP_ALIVE_SECONDS = 65


class CoalescingTransport:
    """Passes everything to ``transport`` but holds the writes until the end of the loop turn,
    so that a response's head and body, always written in the same turn, leave as one send."""

    __slots__ = ("_held", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._held.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        self._scheduled = False
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a :class:`CoalescingTransport`: each send
    also does the receiver's work on loopback, so one per response instead of two matters."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing = CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, coalescing))


def settle_heap() -> None:
    """Once started: move everything built so far (modules, the app, pools, caches) out of the
    collector's sight, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def takes_proxy_headers(service: ServiceName) -> bool:
    """Only the gateway faces clients, through whatever proxy sits in front of it, so only it
    reads X-Forwarded-For for the client's address; the services behind it never use that
    address, and would parse the gateway's forwarded headers on every request for nothing."""
    return service == "gateway"


def serve(app: Litestar, service: ServiceName, host: str, port: int) -> None:
    """Run ``app`` in the foreground until it is told to stop."""
    import uvicorn

    from ticketing.shared.logging import reclaim_standard_library_logging

    app.on_startup.append(settle_heap)  # after the lifespan managers: their objects live on too
    # Last: a startup hook that builds a Litestar app (booking's OpenAPI document) would leave
    # Litestar's log format in charge of the standard library's records.
    app.on_startup.append(reclaim_standard_library_logging)
    uvicorn.run(
        app,
        http=CoalescingHttpProtocol,
        host=host,
        port=port,
        log_config=None,  # uvicorn's loggers propagate to the root handler: one format
        access_log=False,
        lifespan="on",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        proxy_headers=takes_proxy_headers(service),
    )
