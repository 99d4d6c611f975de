"""Booking rules, in plain Python (no I/O, no framework)."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from ticketing.shared.errors import Conflict, InvalidInput

CENT = Decimal("0.01")


def check_ticket_count(ticket_count: int, maximum: int) -> None:
    if ticket_count > maximum:
        raise InvalidInput(
            f"ticket_count {ticket_count} is over the limit of {maximum} tickets per booking",
            errors=[{"field": "ticket_count", "message": f"at most {maximum}"}],
        )


def check_visible_capacity(left_capacity: int, ticket_count: int) -> None:
    """Advisory early rejection; inventory's reservation is what decides."""
    if left_capacity < ticket_count:
        raise Conflict(
            f"only {left_capacity} ticket(s) left for this event, {ticket_count} requested",
            left_capacity=left_capacity,
        )


def total_price(unit_price: str, ticket_count: int) -> str:
    return str((Decimal(unit_price) * ticket_count).quantize(CENT))


def fingerprint(body: bytes) -> str:
    """What an idempotency key is bound to: the exact request body."""
    return hashlib.sha256(body).hexdigest()
