"""The one HTTP client stack of every service: aiohttp sessions, made here with one set of
defaults (ADR 10).

- A timeout on the whole exchange, the body included: an upstream that trickles an answer
  cannot hold a caller, a connection or a breaker slot for longer than that.
- Informational (1xx) answers are aiohttp's to skip; a connection goes back to the pool only
  once its answer was read whole, and a pooled connection on which bytes arrived while it sat
  idle (an upstream that misframed an answer, e.g. a body after a 204) is closed, not reused:
  such bytes would otherwise be taken for the answer to the next request.
- Pooled connections are dropped after ``KEEPALIVE_SECONDS`` idle, well before our services
  close them (uvicorn runs with a keep-alive of 65 s), so a request is not sent on a connection
  the server is closing; aiohttp retries such a request only when its method is idempotent.
- Nothing is added or rewritten behind the caller's back: no default ``User-Agent``,
  ``Accept``, ``Accept-Encoding`` or ``Content-Type`` header, no decompression, no cookies, no
  proxy taken from the environment. The gateway's proxy passes answers through byte for byte.
"""

from __future__ import annotations

from typing import Any

import aiohttp

KEEPALIVE_SECONDS = 30.0
NOT_ADDED = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class InStepConnector(aiohttp.TCPConnector):
    """aiohttp's connector, refusing to hand out a pooled connection that is out of step.

    aiohttp keeps parsing what arrives on an idle pooled connection and queues it as an answer
    (aio-libs/aiohttp#13656); its pool checks only that the socket is open. This checks the
    protocol's own ``should_close`` (queued data, a parse error, an unfinished body) before
    reuse. It overrides a private method: tests/integration/test_upstream.py fails if an aiohttp
    upgrade changes it.
    """

    async def _get(self, *args: Any, **kwargs: Any) -> Any:
        while True:
            connection = await super()._get(*args, **kwargs)
            if connection is None:
                return None
            protocol = connection.protocol
            if protocol is None or not protocol.should_close:
                return connection
            connection.close()  # out of step: drop it and try the next pooled one


def new_session(
    *, timeout: float, max_connections: int = 100, connect_timeout: float | None = None
) -> aiohttp.ClientSession:
    """A session with its own connection pool; close it with ``await session.close()``.
    ``connect_timeout`` bounds the TCP handshake alone: past it aiohttp raises
    ``ConnectionTimeoutError``, which says the request was never sent (the whole-exchange
    timeout raises a bare ``TimeoutError``, which cannot say)."""
    return aiohttp.ClientSession(
        connector=InStepConnector(
            limit=max_connections, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS
        ),
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=NOT_ADDED,
        trust_env=False,
    )


# What a failed exchange raises: aiohttp's errors, the operating system's, and the timeout.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, TimeoutError)
