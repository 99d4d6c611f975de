"""Calls to another service over HTTP: one pooled client, a timeout, and a circuit breaker.

Timeouts, connection errors and 5xx count as failures and raise :class:`Unavailable`; any other
answer is returned for the caller's typed adapter to interpret.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx
import structlog

from ticketing.shared.breaker import CircuitBreaker
from ticketing.shared.errors import Unavailable

log = structlog.get_logger(__name__)


class Credentials(Protocol):
    """A source of this service's own ``Authorization`` header (see oauth_client)."""

    async def authorization(self) -> str: ...

    async def invalidate(self, rejected: str) -> None: ...


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
        self.breaker = breaker or CircuitBreaker(name)
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        credentials = self._credentials
        if credentials is None:
            return await self._call(method, path, json=json, content=content, headers=headers)
        for attempt in (1, 2):
            authorization = await credentials.authorization()
            response = await self._call(
                method,
                path,
                json=json,
                content=content,
                headers={**(headers or {}), "Authorization": authorization},
            )
            if response.status_code != 401 or attempt == 2:
                break
            await credentials.invalidate(authorization)  # rotated keys or revoked: one fresh try
        return response

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        content: bytes | None,
        headers: dict[str, str] | None,
    ) -> httpx.Response:
        self.breaker.before_call()
        try:
            response = await self._client.request(
                method, path, json=json, content=content, headers=headers
            )
        except httpx.HTTPError as error:
            self.breaker.record_failure()
            log.warning("upstream call failed", upstream=self.name, error=type(error).__name__)
            raise Unavailable(f"{self.name} is unavailable", retry_after=1) from error
        if response.status_code >= 500:
            self.breaker.record_failure()
            log.warning("upstream error", upstream=self.name, status=response.status_code)
            raise Unavailable(f"{self.name} answered {response.status_code}", retry_after=1)
        self.breaker.record_success()
        return response

    async def aclose(self) -> None:
        await self._client.aclose()
