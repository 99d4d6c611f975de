"""An upstream's replicas, taken in turn: those ready and admitting calls first, so that a call
goes first where it can be answered, with each one's readiness probed in the background."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import aiohttp
import structlog

from ticketing.shared.http.breaker import BreakerState, CircuitBreaker
from ticketing.shared.http.client import TRANSPORT_ERRORS

log = structlog.get_logger(__name__)
READY_PATH = "/health/ready"
READY_TIMEOUT = 1.0  # a readiness answer slower than this counts as not ready


@dataclass(slots=True, eq=False)
class Replica:
    """One address of an upstream: its own breaker, and whether its readiness check passed when
    last probed (or a connection to it failed since)."""

    url: str
    breaker: CircuitBreaker
    ready: bool = True


class Replicas:
    """The replicas of one upstream (``urls``, at least one), each behind the breaker that
    ``breakers`` makes (given the upstream's name, with the replica's place when there are
    several); their readiness is read through ``session`` every ``ready_every`` seconds."""

    def __init__(
        self,
        name: str,
        urls: Sequence[str],
        breakers: Callable[[str], CircuitBreaker],
        *,
        ready_every: float,
        session: aiohttp.ClientSession,
    ) -> None:
        self.name = name
        several = len(urls) > 1
        self.replicas = [
            Replica(url.rstrip("/"), breakers(f"{name}[{n}]" if several else name))
            for n, url in enumerate(urls)
        ]
        self._turn = 0
        self._ready_every = ready_every
        self._watcher: asyncio.Task[None] | None = None
        # The checks run for the upstream's whole life, in the context it was made in (the
        # service's), not in that of the request whose call happened to start them.
        self._context = contextvars.copy_context()
        self._session = session

    def _in_turn(self) -> Iterator[Replica]:
        """The replicas to try, starting one further on each call: those ready and admitting
        calls first, then the others (a stale check or a breaker about to probe may be wrong)."""
        replicas = self.replicas
        if len(replicas) == 1:
            yield replicas[0]
            return
        self._watch()
        turn = self._turn
        self._turn += 1
        # The turn goes round those that may answer, not round every replica: else the one
        # after a replica passed over would take its calls too, twice its share.
        first = [r for r in replicas if r.ready and r.breaker.state is not BreakerState.OPEN]
        later = [r for r in replicas if r not in first]
        for group in (first, later):
            if group:
                start = turn % len(group)
                yield from group[start:] + group[:start]

    def _watch(self) -> None:
        """Start probing the replicas' readiness (once, from the first call on)."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(
                self._probe_replicas(), context=self._context
            )

    async def _probe_replicas(self) -> None:
        while True:
            checked = await asyncio.gather(
                *(self._check(replica) for replica in self.replicas), return_exceptions=True
            )
            for failure in (result for result in checked if isinstance(result, Exception)):
                # A check must never stop the checks: the replicas would keep their last state.
                log.error("upstream readiness check failed", upstream=self.name, exc_info=failure)
            await asyncio.sleep(self._ready_every)

    async def _check(self, replica: Replica) -> None:
        try:
            async with (
                asyncio.timeout(max(self._ready_every, READY_TIMEOUT)),
                self._session.get(replica.url + READY_PATH) as response,
            ):
                await response.read()
                ready = response.status == 200
        except TRANSPORT_ERRORS:
            ready = False
        if ready != replica.ready:
            log.info(
                "upstream replica readiness", upstream=self.name, replica=replica.url, ready=ready
            )
        replica.ready = ready

    async def _stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
