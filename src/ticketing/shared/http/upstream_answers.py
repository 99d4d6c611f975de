"""What an upstream answers: a whole :class:`Reply`, or an :class:`Answer` whose body streams, and
how an answer's status counts for the replica's breaker."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import structlog

from ticketing.shared.errors import Unavailable
from ticketing.shared.http.breaker import Admission, CircuitBreaker
from ticketing.shared.http.client import TRANSPORT_ERRORS

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Reply:
    """An upstream's whole answer."""

    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class Answer:
    """An answer whose head has arrived; its body streams from :meth:`body`."""

    def __init__(self, upstream: str, response: aiohttp.ClientResponse) -> None:
        self.upstream = upstream
        self._response = response
        self.status = response.status
        self.headers: list[tuple[bytes, bytes]] = list(response.raw_headers)
        self.failure: BaseException | None = None
        # Time the caller spent with a chunk before asking for the next: the whole-exchange
        # timeout runs on through it, but a slow caller is no fault of the upstream's.
        self.caller_seconds = 0.0

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived and been handed out: no chunk will follow."""
        return self._response.content.at_eof()

    async def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a broken or timed-out body raises :class:`Unavailable`."""
        try:
            async for chunk in self._response.content.iter_any():
                handed_over = time.monotonic()
                yield chunk
                self.caller_seconds += time.monotonic() - handed_over
        except TRANSPORT_ERRORS as error:
            self.failure = error
            raise Unavailable(f"{self.upstream} broke off its answer", retry_after=1) from error

    async def finish(self) -> None:
        """Read what the caller left of the body, so that the connection may be reused."""
        async for _ in self.body():
            pass


def judge(breaker: CircuitBreaker, admission: Admission, status: int) -> None:
    """Report an answer's status: a 5xx is the upstream's failure, anything else a success."""
    if status >= 500:
        breaker.record_failure(admission)
    else:
        breaker.record_success(admission)


def judge_broken(
    breaker: CircuitBreaker, admission: Admission, answer: Answer, total: float | None
) -> None:
    """Report an answer whose body broke off: the upstream's failure, unless it timed out while
    the caller held most of the exchange's ``total`` time (then the breaker hears nothing)."""
    error = answer.failure
    caller_was_slow = (
        isinstance(error, TimeoutError) and total is not None and answer.caller_seconds >= total / 2
    )
    if not caller_was_slow:
        breaker.record_failure(admission)
    log.warning(
        "upstream answer broke off",
        upstream=answer.upstream,
        error=type(error).__name__,
        caller_was_slow=caller_was_slow,
    )
