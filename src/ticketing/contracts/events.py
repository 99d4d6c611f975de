"""Kafka event contracts: topics, headers and payloads.

Payloads are dataclasses (FastStream's AsyncAPI generator documents them; msgspec encodes and
validates them). Each is also the event its publisher stores, in the same JSON:
``message_id`` is its event id in the store, and consumers deduplicate on it.
:data:`PUBLICATIONS` is the one place that says which event types are published, where.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, get_args

import msgspec

BOOKINGS_TOPIC: Final = "ticketing.bookings"
BOOKINGS_DLQ_TOPIC: Final = "ticketing.bookings.dlq"
ORDERS_TOPIC: Final = "ticketing.orders"
ORDERS_DLQ_TOPIC: Final = "ticketing.orders.dlq"
# Every topic, for whoever creates them (`ticketing dev`, the tests' brokers).
TOPICS: Final = (BOOKINGS_TOPIC, ORDERS_TOPIC, BOOKINGS_DLQ_TOPIC, ORDERS_DLQ_TOPIC)

# A decimal amount as the services write it (at most ten integer digits, as the price columns
# hold): anything else is refused when the message is decoded, before any effect.
Money = Annotated[str, msgspec.Meta(pattern=r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$")]

# Headers every message carries (values are UTF-8 strings).
EVENT_TYPE_HEADER: Final = "event_type"
MESSAGE_ID_HEADER: Final = "message_id"
CORRELATION_ID_HEADER: Final = "correlation_id"


# Why seats go back to an event: the customer cancelled, or a hold ran out.
ReleaseReason = Literal["cancelled", "expired"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedEvent:
    """What every published event has, so it is said once: its id, first on the wire (its id
    in the store, which consumers deduplicate on), and the version of its shape, which a change
    of a field raises (with an upcaster for the old shape)."""

    SCHEMA_VERSION: ClassVar[int] = 1

    message_id: uuid.UUID


@dataclass(frozen=True, slots=True, kw_only=True)
class BookingRequested(PublishedEvent):
    """A customer asked for tickets; key = event id. Published by booking.

    Version 2 added ``hold`` (the booking settles to HELD, not CONFIRMED) and ``requested_by``
    (the client that asked: it, or an admin, may confirm or cancel the booking)."""

    SCHEMA_VERSION: ClassVar[int] = 2

    booking_id: uuid.UUID
    customer_id: uuid.UUID
    event_id: uuid.UUID
    ticket_count: int
    unit_price: Money
    total_price: Money
    requested_at: datetime
    hold: bool = False
    requested_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BookingCancelled(PublishedEvent):
    """The customer cancelled a HELD or CONFIRMED booking: its seats are to go back; key =
    event id (after its BookingRequested, on the same partition). Published by booking."""

    booking_id: uuid.UUID
    event_id: uuid.UUID
    ticket_count: int
    cancelled_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldExpired(PublishedEvent):
    """A HELD booking was not confirmed in time: its seats are to go back; key = event id.
    Published by booking."""

    booking_id: uuid.UUID
    event_id: uuid.UUID
    ticket_count: int
    expired_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderConfirmed(PublishedEvent):
    """Inventory reserved the tickets and the order exists; key = booking id. Published by order."""

    order_id: uuid.UUID
    booking_id: uuid.UUID
    event_id: uuid.UUID
    ticket_count: int
    total_price: Money
    confirmed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected(PublishedEvent):
    """The booking cannot be fulfilled (e.g. not enough tickets); key = booking id."""

    booking_id: uuid.UUID
    event_id: uuid.UUID
    reason: str
    rejected_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderReleased(PublishedEvent):
    """Inventory took the booking's seats back (it was cancelled, or its hold expired); key =
    booking id. Published by order."""

    order_id: uuid.UUID
    booking_id: uuid.UUID
    event_id: uuid.UUID
    ticket_count: int
    reason: ReleaseReason
    released_at: datetime


OrderOutcome = OrderConfirmed | OrderRejected
SeatRelease = BookingCancelled | HoldExpired  # what asks order to give seats back
BookingEvent = BookingRequested | BookingCancelled | HoldExpired  # on the bookings topic
OrderEvent = OrderConfirmed | OrderRejected | OrderReleased  # on the orders topic
EVENT_TYPES: Final[dict[str, type[BookingEvent | OrderEvent]]] = {
    cls.__name__: cls for cls in (*get_args(BookingEvent), *get_args(OrderEvent))
}


def upcast_booking_requested_v1(shape: dict[str, Any]) -> dict[str, Any]:
    """A stored version-1 BookingRequested as version 2: no hold, its requester unknown (only
    an admin may confirm or cancel it)."""
    return {**shape, "hold": False, "requested_by": None}


@dataclass(frozen=True, slots=True)
class Publication:
    """Which service publishes events of one type, on which topic, under which message key."""

    event: type[Any]
    publisher: str
    topic: str
    key: Callable[[Any], str]


def _published(*publications: Publication) -> dict[str, Publication]:
    return {publication.event.__name__: publication for publication in publications}


# Every published event type, by name: the event stores, the relay and the AsyncAPI document
# read it. Any other stored event is internal to its service.
PUBLICATIONS: Final[dict[str, Publication]] = _published(
    Publication(BookingRequested, "booking", BOOKINGS_TOPIC, key=lambda e: str(e.event_id)),
    Publication(BookingCancelled, "booking", BOOKINGS_TOPIC, key=lambda e: str(e.event_id)),
    Publication(HoldExpired, "booking", BOOKINGS_TOPIC, key=lambda e: str(e.event_id)),
    Publication(OrderConfirmed, "order", ORDERS_TOPIC, key=lambda e: str(e.booking_id)),
    Publication(OrderRejected, "order", ORDERS_TOPIC, key=lambda e: str(e.booking_id)),
    Publication(OrderReleased, "order", ORDERS_TOPIC, key=lambda e: str(e.booking_id)),
)


@dataclass(frozen=True, slots=True)
class Subscription:
    """A consuming service's consumer group on one topic: the event types it takes, what it
    does with them, and where the messages that keep failing go."""

    group: str  # also the consumer's name in its inbox and the actor of what it records
    topic: str
    dlq_topic: str
    events: tuple[type[Any], ...]
    effect: str


# Who consumes what. Declared here, beside the publications, because the AsyncAPI document the
# gateway serves lists them and the gateway may not import another service; each consuming
# service subscribes with its own.
ORDER_SUBSCRIPTION: Final = Subscription(
    group="order-service",
    topic=BOOKINGS_TOPIC,
    dlq_topic=BOOKINGS_DLQ_TOPIC,
    events=get_args(BookingEvent),
    effect="BookingRequested: reserves at inventory, records the order, publishes the "
    "outcome. BookingCancelled or HoldExpired (only for a booking whose order is confirmed): "
    "gives the seats back at inventory and publishes OrderReleased, once per booking.",
)
BOOKING_SUBSCRIPTION: Final = Subscription(
    group="booking-service",
    topic=ORDERS_TOPIC,
    dlq_topic=ORDERS_DLQ_TOPIC,
    events=get_args(OrderEvent),
    effect="OrderConfirmed or OrderRejected: moves the booking to CONFIRMED (HELD, for a hold) "
    "or REJECTED. OrderReleased: moves a cancelled booking to CANCELLED. Once per message.",
)
SUBSCRIPTIONS: Final = (ORDER_SUBSCRIPTION, BOOKING_SUBSCRIPTION)
