import pytest

from ticketing.shared.http.breaker import BreakerState, CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, probes: int = 1) -> CircuitBreaker:
    return CircuitBreaker("inventory", open_seconds=5, half_open_probes=probes, clock=clock)


def state_of(b: CircuitBreaker) -> BreakerState:
    """Read the state through a call, so that the type checker does not narrow it."""
    return b.state


def call(b: CircuitBreaker, ok: bool) -> None:
    admission = b.admit()
    if ok:
        b.record_success(admission)
    else:
        b.record_failure(admission)


def test_stays_closed_below_the_minimum_number_of_calls() -> None:
    b = breaker(Clock())
    for _ in range(3):
        call(b, ok=False)
    assert state_of(b) is BreakerState.CLOSED


def test_opens_when_half_of_the_last_eight_calls_failed() -> None:
    b = breaker(Clock())
    for ok in (True, True, True, True, True, False, False, False):
        call(b, ok)
    assert state_of(b) is BreakerState.CLOSED  # 3 of 8 failed
    call(b, ok=False)  # window now holds 4 failures of 8
    assert state_of(b) is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as refused:
        b.admit()
    assert refused.value.extensions["retry_after"] == 5


def test_half_open_admits_a_bounded_number_of_probes_then_closes() -> None:
    clock = Clock()
    b = breaker(clock, probes=2)
    for _ in range(4):
        call(b, ok=False)
    clock.now = 5.0
    assert state_of(b) is BreakerState.HALF_OPEN
    first, second = b.admit(), b.admit()
    with pytest.raises(CircuitOpen):
        b.admit()  # a third concurrent probe is refused
    b.record_success(first)
    b.record_success(first)  # reported twice: counted once
    assert state_of(b) is BreakerState.HALF_OPEN
    b.record_success(second)
    assert state_of(b) is BreakerState.CLOSED
    call(b, ok=True)


def test_a_failed_probe_opens_again_for_the_full_period() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(4):
        call(b, ok=False)
    clock.now = 5.0
    call(b, ok=False)
    assert state_of(b) is BreakerState.OPEN
    clock.now = 9.9
    assert state_of(b) is BreakerState.OPEN
    clock.now = 10.0
    assert state_of(b) is BreakerState.HALF_OPEN


def test_late_outcomes_of_calls_admitted_before_opening_are_ignored() -> None:
    clock = Clock()
    b = breaker(clock)
    early, late = b.admit(), b.admit()
    for _ in range(4):
        call(b, ok=False)
    b.record_failure(early)
    assert state_of(b) is BreakerState.OPEN
    clock.now = 5.0
    assert state_of(b) is BreakerState.HALF_OPEN
    b.record_success(late)  # admitted while closed: says nothing about the upstream now
    assert state_of(b) is BreakerState.HALF_OPEN


def test_a_probe_released_without_an_outcome_frees_its_slot() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(4):
        call(b, ok=False)
    clock.now = 5.0
    probe = b.admit()
    with pytest.raises(CircuitOpen):
        b.admit()
    b.release(probe)  # cancelled: no outcome
    b.release(probe)  # released twice: freed once
    second = b.admit()
    with pytest.raises(CircuitOpen):
        b.admit()
    b.record_success(second)
    b.release(second)  # after an outcome: a no-op
    assert state_of(b) is BreakerState.CLOSED


def test_a_call_that_may_not_probe_passes_half_open_without_a_slot_and_says_nothing() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(4):
        call(b, ok=False)
    clock.now = 5.0
    waiting = b.admit(may_probe=False)  # a long-poll
    probe = b.admit()  # the one probe's slot is still free
    b.record_failure(waiting)
    assert state_of(b) is BreakerState.HALF_OPEN  # the long-poll's failure said nothing
    b.record_success(probe)
    assert state_of(b) is BreakerState.CLOSED
    closed = b.admit(may_probe=False)  # a closed breaker counts it like any call
    assert not closed.settled
    b.release(closed)
