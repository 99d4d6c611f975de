"""A small circuit breaker with a bounded half-open state.

Closed: calls pass; the outcomes of the last ``window`` calls are kept. When at least
``min_calls`` were seen and the failure share reaches ``failure_ratio``, it opens.
Open: calls fail fast with :class:`CircuitOpen` for ``open_seconds``.
Half-open: at most ``half_open_probes`` calls are let through at once; when that many probes
succeed it closes, and any probe failure opens it again.

Each admitted call holds an :class:`Admission` and reports on it exactly once. An outcome counts
only in the state that admitted the call: a call admitted before the breaker opened proves
nothing about the upstream later. A call that ends without an outcome (cancelled) releases its
probe slot in :meth:`CircuitBreaker.release`, so a half-open breaker is never left full of
probes that will never report.

aiobreaker lets every concurrent call through in half-open (a thundering herd on a recovering
upstream), hence this one (see docs/adr/0002-circuit-breaker.md).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ticketing.shared.errors import Unavailable


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(Unavailable):
    """The breaker refuses the call: the upstream failed recently."""


@dataclass(slots=True)
class Admission:
    """One admitted call: the state it was admitted in, and whether it has reported yet."""

    generation: int
    probe: bool
    settled: bool = False


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        window: int = 8,
        min_calls: int = 4,
        failure_ratio: float = 0.5,
        open_seconds: float = 5.0,
        half_open_probes: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._min_calls = min_calls
        self._failure_ratio = failure_ratio
        self._open_seconds = open_seconds
        self._half_open_probes = half_open_probes
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0
        # Bumped on every change of state: outcomes of calls admitted before it are stale.
        self._generation = 0

    @property
    def state(self) -> BreakerState:
        elapsed = self._clock() - self._opened_at
        if self._state is BreakerState.OPEN and elapsed >= self._open_seconds:
            self._enter(BreakerState.HALF_OPEN)
        return self._state

    def retry_after(self) -> float:
        """Seconds until the breaker lets a probe through (0 when it would now)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._open_seconds - (self._clock() - self._opened_at))

    def admit(self, *, may_probe: bool = True) -> Admission:
        """Admit a call or raise :class:`CircuitOpen`. The caller reports the outcome with
        :meth:`record_success` or :meth:`record_failure`, and calls :meth:`release` in a
        ``finally`` whatever happened. A call that may not probe (one that would hold a
        probe's slot for long: a long-poll) passes a half-open breaker without taking one,
        and its outcome says nothing."""
        state = self.state
        if state is BreakerState.OPEN:
            raise CircuitOpen(
                f"{self.name} is unavailable", retry_after=max(1, round(self.retry_after()))
            )
        probe = state is BreakerState.HALF_OPEN
        if probe and not may_probe:
            return Admission(self._generation, probe=False, settled=True)
        if probe:
            if self._probes_in_flight >= self._half_open_probes:
                raise CircuitOpen(f"{self.name} is recovering", retry_after=1)
            self._probes_in_flight += 1
        return Admission(self._generation, probe)

    def record_success(self, admission: Admission) -> None:
        if not self._settle(admission):
            return
        if self._state is BreakerState.HALF_OPEN:
            self._probe_successes += 1
            if self._probe_successes >= self._half_open_probes:
                self._enter(BreakerState.CLOSED)
            return
        self._outcomes.append(True)

    def record_failure(self, admission: Admission) -> None:
        if not self._settle(admission):
            return
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        self._outcomes.append(False)
        failures = self._outcomes.count(False)
        if (
            len(self._outcomes) >= self._min_calls
            and failures / len(self._outcomes) >= self._failure_ratio
        ):
            self._open()

    def release(self, admission: Admission) -> None:
        """End a call that reported nothing (cancelled, or failed in a way that says nothing
        about the upstream): its probe slot is free again. A no-op after an outcome."""
        self._settle(admission)

    def _settle(self, admission: Admission) -> bool:
        """Mark ``admission`` reported; whether its outcome still counts (first report, and
        the breaker has not changed state since the call was admitted)."""
        if admission.settled:
            return False
        admission.settled = True
        if admission.generation != self._generation:
            return False
        if admission.probe:
            self._probes_in_flight -= 1
        return True

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._enter(BreakerState.OPEN)

    def _enter(self, state: BreakerState) -> None:
        self._state = state
        self._generation += 1
        self._outcomes.clear()
        self._probes_in_flight = 0
        self._probe_successes = 0
