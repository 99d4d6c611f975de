"""Hostile cases for a batch item's own causation and correlation ids."""

from __future__ import annotations

import uuid

from ticketing.contracts.inventory import ReservationItem
from ticketing.inventory.service import item_causes
from ticketing.shared.eventstore import Cause

REQUEST = Cause(actor="order-service", correlation_id="batch-request", causation_id="batch-request")


def test_an_item_id_outside_printable_ascii_is_left_out_as_a_header_id_is() -> None:
    """The review mend stores ids from X-Causation-ID and X-Request-ID only in printable ASCII;
    the same ids named in a batch's body reach the store with a line break or an escape."""
    booking_id = uuid.uuid4()
    items = [
        ReservationItem(
            uuid.uuid4(),
            booking_id,
            1,
            causation_id="message-1\nactor: admin",
            correlation_id="trace-\x1b[2J",
        )
    ]
    (cause,) = item_causes(items, REQUEST).values()
    assert cause.causation_id == "batch-request"
    assert cause.correlation_id == "batch-request"
