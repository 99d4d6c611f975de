"""Calls to another service over HTTP: an aiohttp session (pool and whole-exchange timeout, see
:mod:`ticketing.shared.http.client`) spread over the service's replicas, each behind its own
circuit breaker.

Timeouts, connection errors and 5xx count as failures and raise :class:`Unavailable`; any other
answer is returned for the caller's typed adapter to interpret. An exchange is a success only
once its body has been read whole, and a call that is cancelled reports nothing but frees its
breaker slot. An answer that may stream for hours is judged by its head instead, so that it never
holds a half-open breaker's probe slot, nor a verdict, for its whole life.

With several replicas (taken in turn, see :mod:`ticketing.shared.http.replicas`), a call moves on to
the next when the request cannot have reached the one it tried (no connection), or when its
method is idempotent, so a booking is never sent twice; :class:`Unavailable` comes only when no
replica answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from enum import Enum
from typing import Protocol

import aiohttp
import structlog
from yarl import URL

from ticketing.shared.errors import Unavailable
from ticketing.shared.http.breaker import Admission, CircuitBreaker, CircuitOpen
from ticketing.shared.http.client import TRANSPORT_ERRORS, new_session
from ticketing.shared.http.replicas import Replica, Replicas
from ticketing.shared.http.upstream_answers import Answer, Reply, judge, judge_broken

log = structlog.get_logger(__name__)
Headers = Sequence[tuple[str, str]]
# Failures that leave the request unsent (no connection was made): another replica may take it.
NOT_SENT: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
)
# Methods that may be sent again after a failure that could have come after the request arrived.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class Credentials(Protocol):
    """A source of this service's own ``Authorization`` header (see oauth_client)."""

    async def authorization(self) -> str: ...

    async def invalidate(self, rejected: str) -> None: ...


# Answers whose framing ends at the head whatever their headers say: a server that sends a body
# after them anyway puts the connection out of step, so it is closed rather than pooled.
BODILESS_STATUSES = frozenset({204, 304})


class Lasting(Enum):
    """An exchange that may hold its connection long, taken from a pool of its own (so that it
    never leaves an ordinary call waiting for one)."""

    # A long-poll: its head comes only when its wait ends, so it is no half-open breaker's
    # probe (it would refuse every other call to that replica while it waits).
    WAIT = "wait"
    # An event stream: its head comes at once and its body may last hours, so the breaker
    # hears the head's outcome and nothing about the body's end.
    STREAM = "stream"


class Upstream(Replicas):
    """Calls to one upstream service, spread over its replicas."""

    def __init__(
        self,
        name: str,
        base_urls: str | Sequence[str],
        *,
        timeout: float = 3.0,
        breakers: Callable[[str], CircuitBreaker] = CircuitBreaker,
        max_connections: int = 100,
        credentials: Credentials | None = None,
        ready_every: float = 1.0,
    ) -> None:
        """``base_urls``: the replicas' addresses; ``breakers`` makes each one's breaker (given
        the upstream's name, with the replica's place when there are several)."""
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError(f"{name}: no address to call")
        # A handshake that has not completed in half the time will not: cut it short so that a
        # write can still go to another replica (it cannot have arrived) within the timeout.
        session = new_session(
            timeout=timeout, max_connections=max_connections, connect_timeout=timeout / 2
        )
        super().__init__(name, urls, breakers, ready_every=ready_every, session=session)
        self._credentials = credentials
        # Long-polls and streams hold their connection for as long as they last: from a pool of
        # their own (unbounded: the upstream bounds how many each client may hold open), they
        # never leave an ordinary call waiting for one.
        self._lasting_session = new_session(
            timeout=timeout, max_connections=0, connect_timeout=timeout / 2
        )

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
        """A GET outside the breakers (health checks, documents): a probe never moves them. It
        goes to the replicas in turn, ready ones first, and returns the first answer that is
        not a 5xx (else the last 5xx): one unready replica does not stand for the upstream
        while another would answer."""
        failure: BaseException | None = None
        answered: Reply | None = None
        for replica in self._in_turn():
            try:
                async with self._session.get(replica.url + path) as response:
                    answered = Reply(response.status, await response.read())
            except TRANSPORT_ERRORS as error:
                failure = error
                continue
            if answered.status_code < 500:
                return answered
        if answered is not None:
            return answered
        raise Unavailable(f"{self.name} is unavailable", retry_after=1) from failure

    @asynccontextmanager
    async def open(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes,
        *,
        timeouts: aiohttp.ClientTimeout | None = None,
        lasting: Lasting | None = None,
    ) -> AsyncIterator[Answer]:
        """Send a request and yield the answer once its head arrived; the caller reads the body
        inside the block. Raises :class:`Unavailable` when every replica's breaker refuses or
        none can be reached, or when the exchange fails or times out (the body included).

        ``timeouts`` replace the upstream's whole-exchange timeout for this exchange (the
        connect limit, when they set none, stays the upstream's). A ``lasting`` exchange is
        treated as :class:`Lasting` says: for a stream, the breaker hears the head's outcome
        (a 5xx fails, anything else succeeds)."""
        limits = self._limits(timeouts)
        replica, admission, response = await self._send(
            method, target, headers, body, limits, lasting=lasting
        )
        breaker = replica.breaker
        try:
            if lasting is Lasting.STREAM:  # what comes later says nothing: settled here
                judge(breaker, admission, response.status)
            answer = Answer(self.name, response)
            try:
                yield answer
                if answer.failure is None:
                    await answer.finish()
            except BaseException:
                if answer.failure is not None:
                    judge_broken(breaker, admission, answer, limits.total)
                raise  # anything else (the caller's own failure, a cancellation) says nothing
            finally:
                if method == "HEAD" or answer.status in BODILESS_STATUSES:
                    response.close()
                else:
                    response.release()  # back to the pool if read whole, else closed
            if answer.failure is not None:
                judge_broken(breaker, admission, answer, limits.total)
            else:
                judge(breaker, admission, answer.status)
        finally:
            breaker.release(admission)

    async def _send(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes,
        limits: aiohttp.ClientTimeout,
        *,
        lasting: Lasting | None = None,
    ) -> tuple[Replica, Admission, aiohttp.ClientResponse]:
        """The first answer's head from the replicas in turn, and the admission it holds."""
        refusal: Unavailable | None = None
        for replica in self._in_turn():
            try:
                admission = replica.breaker.admit(may_probe=lasting is not Lasting.WAIT)
            except CircuitOpen as error:
                refusal = _sooner(refusal, error)
                continue
            try:
                session = self._session if lasting is None else self._lasting_session
                response = await session.request(
                    method,
                    URL(replica.url + target, encoded=True),  # the target as the caller wrote it
                    headers=headers,
                    data=body or None,
                    allow_redirects=False,
                    timeout=limits,
                )
            except TRANSPORT_ERRORS as error:
                replica.breaker.record_failure(admission)
                replica.breaker.release(admission)
                unsent = isinstance(error, NOT_SENT)
                if unsent:
                    replica.ready = False  # until its readiness check passes again
                log.warning(
                    "upstream call failed",
                    upstream=self.name,
                    replica=replica.url,
                    error=type(error).__name__,
                )
                unavailable = Unavailable(f"{self.name} is unavailable", retry_after=1)
                # A read that timed out is not sent on: the next replica would most likely be
                # as slow, and the caller would wait a timeout per replica.
                timed_out = isinstance(error, TimeoutError)
                if not (unsent or (method in IDEMPOTENT and not timed_out)):
                    raise unavailable from error
                unavailable.__cause__ = error
                refusal = _sooner(refusal, unavailable)
                continue
            except BaseException:
                replica.breaker.release(admission)
                raise
            return replica, admission, response
        assert refusal is not None, "an upstream has at least one replica"
        raise refusal

    def _limits(self, given: aiohttp.ClientTimeout | None) -> aiohttp.ClientTimeout:
        """The timeouts of one exchange: ``given`` with the upstream's connect limit when it
        sets none, else the upstream's own."""
        own = self._session.timeout
        if given is None:
            return own
        return aiohttp.ClientTimeout(
            total=given.total,
            connect=given.connect,
            sock_read=given.sock_read,
            sock_connect=own.sock_connect if given.sock_connect is None else given.sock_connect,
            ceil_threshold=given.ceil_threshold,
        )

    async def _call(self, method: str, path: str, headers: Headers, body: bytes) -> Reply:
        async with self.open(method, path, headers, body) as answer:
            content = b"".join([chunk async for chunk in answer.body()])
        if answer.status >= 500:
            log.warning("upstream error", upstream=self.name, status=answer.status)
            raise Unavailable(f"{self.name} answered {answer.status}", retry_after=1)
        return Reply(answer.status, content)

    async def aclose(self) -> None:
        await self._stop_watching()
        await self._session.close()
        await self._lasting_session.close()


def _sooner(kept: Unavailable | None, new: Unavailable) -> Unavailable:
    """Of two refusals, the one that asks the caller to wait less."""
    if kept is None:
        return new
    wait: int = new.extensions.get("retry_after", 1)
    return new if wait < kept.extensions.get("retry_after", 1) else kept
