"""A record as the consumer runner receives it from the broker, valid or not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from ticketing.contracts.events import EVENT_TYPE_HEADER, OrderRejected
from ticketing.shared.messaging.consumer import Delivery


def delivery(offset: int, *, valid: bool = True) -> Delivery:
    event = OrderRejected(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        reason="insufficient_capacity",
        rejected_at=datetime.now(UTC),
    )
    return Delivery(
        topic="t",
        partition=0,
        offset=offset,
        key=None,
        value=msgspec.json.encode(event) if valid else b"{not json",
        headers={EVENT_TYPE_HEADER: "OrderRejected"},
    )
