"""The rules an event is scheduled by: its price, its capacity, its start and its limit per
customer (plain Python, like the rest of inventory's domain)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from ticketing.shared.errors import InvalidInput

CENT = Decimal("0.01")
MAX_PRICE = Decimal("99999999.99")


def parse_price(text: str) -> Decimal:
    """A ticket price from its decimal string; at most two fraction digits, never negative."""
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise InvalidInput('ticket_price must be a decimal string such as "49.00"') from None
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        raise InvalidInput(f"ticket_price must be between 0 and {MAX_PRICE}")
    if price != price.quantize(CENT):
        raise InvalidInput("ticket_price may have at most two fraction digits")
    return price.quantize(CENT)


def format_price(price: Decimal) -> str:
    return str(price.quantize(CENT))


def check_event_capacity(event_capacity: int, venue_capacity: int) -> None:
    """An event cannot sell more seats than its venue holds."""
    if event_capacity > venue_capacity:
        raise InvalidInput(
            f"total_capacity {event_capacity} exceeds the venue's capacity of {venue_capacity}",
            errors=[{"field": "total_capacity", "message": "exceeds the venue's capacity"}],
        )


def check_start(starts_at: datetime | None) -> None:
    """A start time must exist in UTC (it is stored so): ``0001-01-01T00:30+01:00`` does not."""
    if starts_at is None:
        return
    try:
        starts_at.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            "starts_at is outside the years 1 to 9999 in UTC",
            errors=[{"field": "starts_at", "message": "outside the years 1 to 9999 in UTC"}],
        ) from None


def check_limit(max_tickets_per_customer: int | None) -> None:
    """A limit per customer lets each customer have at least one seat (None: no limit)."""
    if max_tickets_per_customer is not None and max_tickets_per_customer < 1:
        raise InvalidInput(
            "max_tickets_per_customer must be at least 1",
            errors=[{"field": "max_tickets_per_customer", "message": "must be at least 1"}],
        )
