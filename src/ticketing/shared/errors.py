"""The one exception hierarchy that services raise and ``ticketing.shared.http.problems`` maps
to RFC 9457 problem details. Plain Python: domain code may raise these."""

from __future__ import annotations

from typing import Any, ClassVar


class TicketingError(Exception):
    """Base of every expected failure. ``kind`` picks the HTTP status in the mapper."""

    kind: ClassVar[str] = "invalid"
    title: ClassVar[str] = "Invalid request"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class InvalidInput(TicketingError):
    """The request is well-formed but breaks a rule (400)."""

    kind = "invalid"
    title = "Invalid request"


class NotFound(TicketingError):
    """A named resource does not exist (404)."""

    kind = "not_found"
    title = "Not found"


class Forbidden(TicketingError):
    """The caller is known but may not do this (403): a permission it lacks, or another
    client's booking."""

    kind = "forbidden"
    title = "Forbidden"


class Conflict(TicketingError):
    """The request contradicts the current state (409)."""

    kind = "conflict"
    title = "Conflict"


class Unavailable(TicketingError):
    """A dependency cannot answer now; retry later (503)."""

    kind = "unavailable"
    title = "Service unavailable"


class Unprocessable(TicketingError):
    """The request cannot be applied as sent, e.g. an idempotency key reused for another body."""

    kind = "unprocessable"
    title = "Unprocessable request"


class RateLimited(TicketingError):
    """The client sent more requests than its limit allows (429)."""

    kind = "rate_limited"
    title = "Too many requests"


class PayloadTooLarge(TicketingError):
    """The request body is over the size limit (413)."""

    kind = "too_large"
    title = "Payload too large"


class ImpossibleHistory(ValueError):
    """An event that cannot follow the state it is applied to (a second registration, seats of
    an event never scheduled, an event of another stream): the store or a caller is broken,
    and nothing may be folded further. Never a client's fault: it is a server error."""
