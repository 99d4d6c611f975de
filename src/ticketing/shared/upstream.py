"""Calls to another service over HTTP: a keep-alive pool, a timeout, and a circuit breaker.

Timeouts, connection errors and 5xx count as failures and raise :class:`Unavailable`; any other
answer is returned for the caller's typed adapter to interpret.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import structlog

from ticketing.shared.breaker import CircuitBreaker
from ticketing.shared.errors import Unavailable
from ticketing.shared.http11 import Http11Pool, UpstreamProtocolError, UpstreamResponse

log = structlog.get_logger(__name__)


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
        self._timeout = timeout
        self.breaker = breaker or CircuitBreaker(name)
        url = urlsplit(base_url)
        self._prefix = url.path.rstrip("/")
        self._pool = Http11Pool(
            url.hostname or "127.0.0.1", url.port or 80, max_connections=max_connections
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        credentials = self._credentials
        if credentials is None:
            return await self._call(method, path, content=content, headers=headers)
        for attempt in (1, 2):
            authorization = await credentials.authorization()
            response = await self._call(
                method,
                path,
                content=content,
                headers={**(headers or {}), "Authorization": authorization},
            )
            if response.status_code != 401 or attempt == 2:
                break
            await credentials.invalidate(authorization)  # rotated keys or revoked: one fresh try
        return response

    async def open(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> UpstreamResponse:
        """Send a request and read the head of the answer; the caller streams the body and
        releases it. The breaker counts timeouts, connection errors and 5xx as failures."""
        self.breaker.before_call()
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._pool.request(method, self._prefix + target, headers, body)
        except (OSError, TimeoutError, UpstreamProtocolError) as error:
            self.breaker.record_failure()
            log.warning("upstream call failed", upstream=self.name, error=type(error).__name__)
            raise Unavailable(f"{self.name} is unavailable", retry_after=1) from error
        if response.status >= 500:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        return response

    async def _call(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None,
        headers: dict[str, str] | None,
    ) -> Reply:
        fields = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        ]
        answer = await self.open(method, path, fields, content or b"")
        try:
            async with asyncio.timeout(self._timeout):
                body = b"".join([chunk async for chunk in answer.body()])
        except (OSError, TimeoutError, UpstreamProtocolError) as error:
            raise Unavailable(f"{self.name} is unavailable", retry_after=1) from error
        finally:
            answer.release()
        if answer.status >= 500:
            log.warning("upstream error", upstream=self.name, status=answer.status)
            raise Unavailable(f"{self.name} answered {answer.status}", retry_after=1)
        return Reply(answer.status, body)

    async def aclose(self) -> None:
        await self._pool.aclose()
