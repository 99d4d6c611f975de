"""The correlation id of the request or message being handled, in a context variable of its
own, set and reset directly: binding it through structlog's contextvars scans every context
variable on every request. :func:`add_correlation_id` puts it on every log line."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def printable_ascii(text: str) -> bool:
    """Whether an id from a header may be used as it is: header bytes have no declared
    encoding, so anything outside printable ASCII would be read as something else."""
    return text.isascii() and text.isprintable()


def bind(correlation_id: str | None) -> Token[str | None]:
    """Handle what follows under ``correlation_id`` until :func:`unbind`."""
    return _correlation_id.set(correlation_id)


def unbind(bound: Token[str | None]) -> None:
    _correlation_id.reset(bound)


def current_correlation_id() -> str | None:
    """The correlation id bound for the request or message being handled, if any."""
    return _correlation_id.get()


@contextmanager
def correlation_id_bound(correlation_id: str | None) -> Iterator[None]:
    """Handle a message (or anything else) under ``correlation_id``."""
    bound = bind(correlation_id)
    try:
        yield
    finally:
        unbind(bound)


def add_correlation_id(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: the bound correlation id on every line written under it."""
    correlation_id = _correlation_id.get()
    if correlation_id is not None:
        event_dict.setdefault("correlation_id", correlation_id)
    return event_dict
