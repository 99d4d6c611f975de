"""The streaming reverse proxy: one pooled HTTP client per upstream, a breaker each, a timeout.

Request and response bodies stream through; hop-by-hop headers are dropped; the caller's
``Authorization`` is forwarded (each service verifies it again); ``X-Forwarded-*`` and
``X-Request-ID`` are set. A refused, timed-out or unreachable upstream gives a 503 problem
naming the service, with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import unquote

import httpx
import structlog
from litestar.types import Message, Receive, Scope, Send
from prometheus_client import Histogram

from ticketing.shared.breaker import CircuitBreaker, CircuitOpen
from ticketing.shared.http11 import Http11Pool, UpstreamProtocolError
from ticketing.shared.observability import current_correlation_id

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the gateway itself, never passed through from either side.
OWN_HEADERS = frozenset(
    {"host", "x-request-id", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}
)
log = structlog.get_logger(__name__)


class BodyTooLarge(Exception):
    pass


class UpstreamUnavailable(Exception):
    def __init__(self, upstream: str, retry_after: int) -> None:
        super().__init__(f"{upstream} is unavailable")
        self.upstream = upstream
        self.retry_after = retry_after


@dataclass
class Upstream:
    name: str
    base_url: str
    breaker: CircuitBreaker
    timeout: float
    client: httpx.AsyncClient = field(init=False)  # health checks and documents
    pool: Http11Pool = field(init=False)  # proxied requests

    def __post_init__(self) -> None:
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(self.timeout))
        url = httpx.URL(self.base_url)
        self.pool = Http11Pool(url.host, url.port or 80)


def request_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The caller's headers minus hop-by-hop ones, plus X-Forwarded-* and X-Request-ID."""
    raw: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
    named_in_connection = {
        token.strip().lower()
        for name, value in raw
        if name.lower() == b"connection"
        for token in value.decode("latin-1").split(",")
    }
    kept: list[tuple[bytes, bytes]] = []
    forwarded_for = ""
    host = ""
    for name, value in raw:
        lowered = name.decode("latin-1").lower()
        if lowered == "x-forwarded-for":
            forwarded_for = value.decode("latin-1")
        if lowered == "host":
            host = value.decode("latin-1")
        if lowered in HOP_BY_HOP or lowered in OWN_HEADERS or lowered in named_in_connection:
            continue
        kept.append((name, value))
    client = scope.get("client")
    client_ip = client[0] if client else "unknown"
    chain = f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip
    kept += [
        (b"x-forwarded-for", chain.encode("latin-1")),
        (b"x-forwarded-proto", str(scope.get("scheme", "http")).encode("latin-1")),
        (b"x-forwarded-host", host.encode("latin-1")),
        (b"x-request-id", (current_correlation_id() or "").encode("latin-1")),
    ]
    return kept


def response_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's headers minus hop-by-hop ones and those the gateway sets itself."""
    named_in_connection = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.decode("latin-1").split(",")
        if token.strip()
    }
    dropped = HOP_BY_HOP | named_in_connection | {"x-request-id", "date", "server"}
    return [
        (name, value) for name, value in headers if name.decode("latin-1").lower() not in dropped
    ]


def target_of(scope: Scope) -> str:
    """The path and query to request upstream: exactly what the caller sent."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    target = raw_path.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


def decoded_path(scope: Scope) -> str | None:
    """The full request path, or None when it holds dot segments or encoded slashes (refused)."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    text = raw_path.decode("latin-1")
    if "%2f" in text.lower() or "%5c" in text.lower():
        return None
    path = unquote(text)
    if any(segment in (".", "..") for segment in path.split("/")):
        return None
    return path


def has_body(scope: Scope) -> bool:
    """Whether the caller announced a body (whatever the method: a GET may carry one)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"transfer-encoding" or (
            name.lower() == b"content-length" and value != b"0"
        ):
            return True
    return False


async def body_of(receive: Receive, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused past ``limit`` bytes."""
    seen = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        chunk = body if isinstance(body, bytes) else b""
        seen += len(chunk)
        if seen > limit:
            raise BodyTooLarge
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body (small: the limit is the body limit), refused past ``limit``."""
    return b"".join([chunk async for chunk in body_of(receive, limit)])


async def forward(
    upstream: Upstream,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    body_limit: int,
    latency: Histogram,
) -> None:
    """Send the request to ``upstream`` and stream its answer back."""
    try:
        upstream.breaker.before_call()
    except CircuitOpen as refused:
        raise UpstreamUnavailable(upstream.name, int(refused.extensions["retry_after"])) from None
    method = str(scope.get("method", "GET"))
    try:
        body = await read_body(receive, body_limit) if has_body(scope) else b""
    except BodyTooLarge:
        upstream.breaker.record_success()  # the caller's fault, not the upstream's
        raise
    headers = [
        (name, value)
        for name, value in request_headers(scope)
        if name.lower() not in (b"content-length", b"transfer-encoding")
    ]
    started = time.perf_counter()
    try:
        async with asyncio.timeout(upstream.timeout):
            response = await upstream.pool.request(method, target_of(scope), headers, body)
    except (OSError, TimeoutError, UpstreamProtocolError) as error:
        upstream.breaker.record_failure()
        log.warning("upstream failed", upstream=upstream.name, error=type(error).__name__)
        raise UpstreamUnavailable(upstream.name, 1) from error
    if response.status >= 500:
        upstream.breaker.record_failure()
    else:
        upstream.breaker.record_success()
    latency.labels(upstream.name, f"{response.status // 100}xx").observe(
        time.perf_counter() - started
    )
    try:
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": response_headers(response.headers),
            }
        )
        async for chunk in response.body():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        final: Message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(final)
    finally:
        response.release()
