"""The reverse proxy over each service's :class:`~ticketing.shared.http.upstream.Upstream` (a
keep-alive pool, a breaker, a timeout on the whole exchange).

Request bodies are read whole (at most the body limit) and responses stream back; hop-by-hop
headers and ``Expect`` are dropped; the caller's ``Authorization`` is forwarded (each service
verifies it again); ``X-Forwarded-*`` and ``X-Request-ID`` are set. A refused, timed-out or
unreachable upstream gives a 503 problem naming the service, with ``Retry-After``; an answer
that breaks off after its head was sent ends the caller's connection without completing it, so
the caller can tell it is incomplete.

Each chunk of an answer goes to the caller as it arrives. Long requests (a long-poll, an event
stream: :func:`~ticketing.gateway.routing.long_request`) get timeouts of their own, end at once
when their caller leaves (closing the upstream's connection, so the upstream sees it too), and a
stream's breaker outcome is its head's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
import structlog
from litestar.types import Message, Receive, Scope, Send
from prometheus_client import Histogram

from ticketing.gateway.routing import LongRequest
from ticketing.shared.correlation import current_correlation_id
from ticketing.shared.errors import InvalidInput, Unavailable
from ticketing.shared.http.body import read_body
from ticketing.shared.http.breaker import CircuitBreaker
from ticketing.shared.http.disconnect import CALLER_LEFT, until_caller_leaves
from ticketing.shared.http.upstream import Lasting, Upstream
from ticketing.shared.tracing import CLIENT_TRACE_HEADERS

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by the gateway itself, never passed through from either side; X-Causation-ID is for the
# services' own calls (a client cannot name what caused its request), and every trace starts at
# the gateway (a client cannot choose trace ids, force sampling or send baggage in).
OWN_HEADERS = frozenset(
    {
        b"host",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-causation-id",
        *CLIENT_TRACE_HEADERS,
    }
)
# Not passed on with a request: hop-by-hop, the gateway's own, the body framing (the gateway
# frames the body it forwards itself), and Expect: the gateway has read the body already, and a
# 100 Continue it provoked upstream would be an answer nobody asked for.
NOT_FORWARDED = HOP_BY_HOP | OWN_HEADERS | {b"content-length", b"expect"}
# Asks a buffering proxy in front of the gateway (nginx, an Ingress) to pass a stream's events on
# as they come, unless the upstream said otherwise.
UNBUFFERED = (b"x-accel-buffering", b"no")
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Backend:
    """A service behind the gateway: proxied requests go through ``upstream``'s breaker; health
    checks and API documents are its probes, which never move the breaker."""

    name: str
    upstream: Upstream

    @classmethod
    def create(
        cls,
        name: str,
        base_urls: list[str],
        breakers: Callable[[str], CircuitBreaker],
        timeout: float,
    ) -> Backend:
        upstream = Upstream(
            name, base_urls, timeout=timeout, breakers=breakers, max_connections=200
        )
        return cls(name, upstream)

    async def aclose(self) -> None:
        await self.upstream.aclose()


def request_headers(scope: Scope) -> list[tuple[str, str]]:
    """The caller's headers minus hop-by-hop ones, ``Expect`` and the body framing, plus
    X-Forwarded-* and X-Request-ID. ASGI servers hand header names over lowercased."""
    raw: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
    dropped = NOT_FORWARDED
    forwarded_for = host = b""
    for name, value in raw:
        if name == b"connection":
            dropped = dropped | connection_tokens(value)
        elif name == b"x-forwarded-for":
            forwarded_for = value
        elif name == b"host":
            host = value
    kept = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in raw
        if name not in dropped
    ]
    if not all(value.isascii() for _, value in kept):
        # aiohttp writes header values as UTF-8: other bytes would arrive changed.
        raise InvalidInput("header values must be ASCII")
    client = scope.get("client")
    client_ip = client[0] if client else "unknown"
    forwarded = forwarded_for.decode("latin-1")
    kept += [
        ("x-forwarded-for", f"{forwarded}, {client_ip}" if forwarded else client_ip),
        ("x-forwarded-proto", str(scope.get("scheme", "http"))),
        ("x-forwarded-host", host.decode("latin-1")),
        ("x-request-id", current_correlation_id() or ""),
    ]
    return kept


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """The header names a ``Connection`` header lists (hop-by-hop by declaration)."""
    return frozenset(token.strip().lower() for token in value.split(b",") if token.strip())


def response_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's headers minus hop-by-hop ones and those the gateway sets itself."""
    dropped = HOP_BY_HOP | {b"x-request-id", b"date", b"server"}
    for name, value in headers:
        if name.lower() == b"connection":
            dropped = dropped | connection_tokens(value)
    return [(name, value) for name, value in headers if name.lower() not in dropped]


def target_of(scope: Scope) -> str:
    """The path and query to request upstream: exactly what the caller sent."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    target = raw_path.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


def decoded_path(scope: Scope) -> str | None:
    """The full request path, or None when it holds dot segments, encoded slashes or bytes
    outside ASCII (refused: a target goes upstream exactly as written, and such bytes have no
    single meaning)."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    if not (raw_path.isascii() and query.isascii()):
        return None
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


async def forward(
    upstream: Upstream,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    body_limit: int,
    latency: Histogram,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
    long: LongRequest | None = None,
) -> None:
    """Send the request to ``upstream`` and stream its answer back, with ``extra_headers`` (the
    gateway's own, such as the rate limit's) added to the answer's. Raises PayloadTooLarge, and
    Unavailable when the breaker is open or the upstream cannot answer (before anything was
    sent to the caller), or :class:`AnswerBrokenOff` when its body broke off.

    A ``long`` request runs with its own timeouts and ends as soon as its caller disconnects;
    a stream's breaker outcome is its head's, and its answer carries ``X-Accel-Buffering: no``.
    """
    body = await read_body(receive, body_limit) if has_body(scope) else b""
    request = (str(scope.get("method", "GET")), target_of(scope), request_headers(scope), body)
    if long is None:
        await relay(upstream, request, send, latency=latency, extra_headers=extra_headers)
        return
    answered = False

    async def send_noting(message: Message) -> None:
        nonlocal answered
        answered = True
        await send(message)

    async with until_caller_leaves(receive) as caller:
        await relay(
            upstream, request, send_noting, latency=latency, extra_headers=extra_headers, long=long
        )
    if caller.left and not answered:
        # For the access log and the metrics only: the server drops what goes to a closed
        # connection (one that fails instead would raise an OSError).
        with contextlib.suppress(OSError):
            await send({"type": "http.response.start", "status": CALLER_LEFT, "headers": []})


async def relay(
    upstream: Upstream,
    request: tuple[str, str, list[tuple[str, str]], bytes],
    send: Send,
    *,
    latency: Histogram,
    extra_headers: Sequence[tuple[bytes, bytes]],
    long: LongRequest | None = None,
) -> None:
    """Send ``request`` (method, target, headers, body) and pass the answer to ``send``, each
    chunk as it arrives: the last one, when it is known to be the last, with
    ``more_body=False``, so that a short answer is one body message."""
    method, target, headers, body = request
    lasting = None if long is None else Lasting.STREAM if long.stream else Lasting.WAIT
    timeouts = None if long is None else aiohttp.ClientTimeout(long.total, sock_read=long.read)
    started = time.perf_counter()
    async with upstream.open(
        method,
        target,
        headers,
        body,
        timeouts=timeouts,
        lasting=lasting,
    ) as answer:
        if lasting is not Lasting.WAIT:  # a long-poll's wait is no latency of the upstream's
            latency.labels(upstream.name, f"{answer.status // 100}xx").observe(
                time.perf_counter() - started
            )
        answer_headers = [*response_headers(answer.headers), *extra_headers]
        unbuffered = any(name.lower() == UNBUFFERED[0] for name, _ in answer_headers)
        if lasting is Lasting.STREAM and not unbuffered:
            answer_headers.append(UNBUFFERED)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer_headers}
        )
        finished = False
        try:
            async for chunk in answer.body():
                finished = answer.complete
                await send({"type": "http.response.body", "body": chunk, "more_body": not finished})
        except Unavailable as error:
            raise AnswerBrokenOff(upstream.name) from error
        if not finished:
            final: Message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(final)


class AnswerBrokenOff(Exception):
    """The upstream's answer broke off after its head went to the caller: nothing can be said
    to the caller any more, and its connection must end without completing the answer."""

    def __init__(self, upstream: str) -> None:
        super().__init__(f"{upstream} broke off its answer")
