"""What a consumer's runner counts of the messages it runs: duplicates its handler skipped and
records it dead-lettered.

A handler that finds a message applied before (its inbox claim fails) acknowledges it by
returning, as it always did, and says so with :func:`applied_before`: the runner handling the
message has bound its tally to the context (:func:`counting`), and a handler called without a
runner (a test, a tool) counts nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


def _nothing() -> None:
    pass


@dataclass(frozen=True, slots=True)
class Tally:
    """The counts of one subscription, each a bound call (no label lookup per message)."""

    duplicate: Callable[[], None] = _nothing
    dead_letter: Callable[[], None] = _nothing


NO_TALLY = Tally()
_running: ContextVar[Tally] = ContextVar("tally", default=NO_TALLY)


@contextmanager
def counting(tally: Tally) -> Iterator[None]:
    """Run the handlers of a batch under ``tally`` (tasks started inside inherit it)."""
    bound = _running.set(tally)
    try:
        yield
    finally:
        _running.reset(bound)


def applied_before() -> None:
    """Count the message being handled as a duplicate: applied before, acknowledged and
    skipped."""
    _running.get().duplicate()
