"""Calls to another service over HTTP: an aiohttp session (pool and whole-exchange timeout, see
:mod:`ticketing.shared.httpclient`) behind a circuit breaker.

Timeouts, connection errors and 5xx count as failures and raise :class:`Unavailable`; any other
answer is returned for the caller's typed adapter to interpret. An exchange is a success only
once its body has been read whole, and a call that is cancelled reports nothing but frees its
breaker slot.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import structlog
from yarl import URL

from ticketing.shared.breaker import Admission, CircuitBreaker
from ticketing.shared.errors import Unavailable
from ticketing.shared.httpclient import TRANSPORT_ERRORS, new_session

log = structlog.get_logger(__name__)
Headers = Sequence[tuple[str, str]]


class Credentials(Protocol):
    """A source of this service's own ``Authorization`` header (see oauth_client)."""

    async def authorization(self) -> str: ...

    async def invalidate(self, rejected: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """An upstream's whole answer."""

    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


# Answers whose framing ends at the head whatever their headers say: a server that sends a body
# after them anyway puts the connection out of step, so it is closed rather than pooled.
BODILESS_STATUSES = frozenset({204, 304})


class Answer:
    """An answer whose head has arrived; its body streams from :meth:`body`."""

    def __init__(self, upstream: str, response: aiohttp.ClientResponse) -> None:
        self._upstream = upstream
        self._response = response
        self.status = response.status
        self.headers: list[tuple[bytes, bytes]] = list(response.raw_headers)
        self.failure: BaseException | None = None
        # Time the caller spent with a chunk before asking for the next: the whole-exchange
        # timeout runs on through it, but a slow caller is no fault of the upstream's.
        self.caller_seconds = 0.0

    async def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a broken or timed-out body raises :class:`Unavailable`."""
        try:
            async for chunk in self._response.content.iter_any():
                handed_over = time.monotonic()
                yield chunk
                self.caller_seconds += time.monotonic() - handed_over
        except TRANSPORT_ERRORS as error:
            self.failure = error
            raise Unavailable(f"{self._upstream} broke off its answer", retry_after=1) from error

    async def finish(self) -> None:
        """Read what the caller left of the body, so that the connection may be reused."""
        async for _ in self.body():
            pass


class Upstream:
    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float = 3.0,
        breaker: CircuitBreaker | None = None,
        max_connections: int = 100,
        credentials: Credentials | None = None,
    ) -> None:
        self.name = name
        self._credentials = credentials
        self._base_url = base_url.rstrip("/")
        self.breaker = breaker or CircuitBreaker(name)
        self._timeout = timeout
        self._session = new_session(timeout=timeout, max_connections=max_connections)

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One whole exchange through the breaker, with this service's own token when it has
        credentials (fetched again once when the upstream answers 401). A 5xx raises."""
        credentials = self._credentials
        fields = list((headers or {}).items())
        if credentials is None:
            return await self._call(method, path, fields, content or b"")
        for attempt in (1, 2):
            authorization = await credentials.authorization()
            reply = await self._call(
                method, path, [*fields, ("Authorization", authorization)], content or b""
            )
            if reply.status_code != 401 or attempt == 2:
                break
            await credentials.invalidate(authorization)  # rotated keys or revoked: one fresh try
        return reply

    async def probe(self, path: str) -> Reply:
        """A GET outside the breaker (health checks, documents): a probe never moves it."""
        try:
            async with self._session.get(self._base_url + path) as response:
                return Reply(response.status, await response.read())
        except TRANSPORT_ERRORS as error:
            raise Unavailable(f"{self.name} is unavailable", retry_after=1) from error

    @asynccontextmanager
    async def open(
        self, method: str, target: str, headers: Headers, body: bytes
    ) -> AsyncIterator[Answer]:
        """Send a request and yield the answer once its head arrived; the caller reads the body
        inside the block. Raises :class:`Unavailable` when the breaker refuses, the upstream
        cannot be reached, or the exchange fails or times out (the body included)."""
        admission = self.breaker.admit()
        try:
            try:
                response = await self._session.request(
                    method,
                    URL(self._base_url + target, encoded=True),  # the target as the caller wrote it
                    headers=headers,
                    data=body or None,
                    allow_redirects=False,
                )
            except TRANSPORT_ERRORS as error:
                self.breaker.record_failure(admission)
                log.warning("upstream call failed", upstream=self.name, error=type(error).__name__)
                raise Unavailable(f"{self.name} is unavailable", retry_after=1) from error
            answer = Answer(self.name, response)
            try:
                yield answer
                if answer.failure is None:
                    await answer.finish()
            except BaseException:
                if answer.failure is not None:
                    self._failed(admission, answer)
                raise  # anything else (the caller's own failure, a cancellation) says nothing
            finally:
                if method == "HEAD" or answer.status in BODILESS_STATUSES:
                    response.close()
                else:
                    response.release()  # back to the pool if read whole, else closed
            if answer.failure is not None:
                self._failed(admission, answer)
            elif answer.status >= 500:
                self.breaker.record_failure(admission)
            else:
                self.breaker.record_success(admission)
        finally:
            self.breaker.release(admission)

    def _failed(self, admission: Admission, answer: Answer) -> None:
        """The answer's body broke off: the upstream's failure, unless it timed out while the
        caller held most of the time (then the breaker hears nothing)."""
        error = answer.failure
        caller_was_slow = (
            isinstance(error, TimeoutError) and answer.caller_seconds >= self._timeout / 2
        )
        if not caller_was_slow:
            self.breaker.record_failure(admission)
        log.warning(
            "upstream answer broke off",
            upstream=self.name,
            error=type(error).__name__,
            caller_was_slow=caller_was_slow,
        )

    async def _call(self, method: str, path: str, headers: Headers, body: bytes) -> Reply:
        async with self.open(method, path, headers, body) as answer:
            content = b"".join([chunk async for chunk in answer.body()])
        if answer.status >= 500:
            log.warning("upstream error", upstream=self.name, status=answer.status)
            raise Unavailable(f"{self.name} answered {answer.status}", retry_after=1)
        return Reply(answer.status, content)

    async def aclose(self) -> None:
        await self._session.close()
