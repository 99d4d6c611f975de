"""Which cause each reservation's event is stored with, when a batch names its items' own."""

from __future__ import annotations

import uuid

from ticketing.contracts.inventory import ReservationItem
from ticketing.inventory.service import item_causes
from ticketing.shared.store.eventstore import Cause
from ticketing.shared.store.table import MAX_ID_LENGTH

REQUEST = Cause(actor="order-service", correlation_id="batch-request", causation_id="batch-request")


def test_each_booking_takes_the_ids_its_first_item_names_and_the_request_fills_the_rest() -> None:
    event_id, first, second, plain = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    items = [
        ReservationItem(event_id, first, 1, causation_id="message-1", correlation_id="trace-1"),
        ReservationItem(event_id, first, 2, causation_id="message-9", correlation_id="trace-9"),
        ReservationItem(event_id, second, 1, causation_id="message-2"),
        ReservationItem(event_id, plain, 1),
    ]
    assert item_causes(items, REQUEST) == {
        first: Cause("order-service", correlation_id="trace-1", causation_id="message-1"),
        second: Cause("order-service", correlation_id="batch-request", causation_id="message-2"),
    }


def test_a_first_item_without_ids_keeps_the_request_cause_whatever_its_repeats_name() -> None:
    event_id, booking_id = uuid.uuid4(), uuid.uuid4()
    items = [
        ReservationItem(event_id, booking_id, 1),
        ReservationItem(event_id, booking_id, 1, causation_id="message-2"),
    ]
    assert item_causes(items, REQUEST) == {}


def test_an_id_the_store_cannot_hold_whole_is_left_out_not_clipped() -> None:
    booking_id = uuid.uuid4()
    long = "x" * (MAX_ID_LENGTH + 1)
    items = [ReservationItem(uuid.uuid4(), booking_id, 1, causation_id=long, correlation_id="t")]
    (cause,) = item_causes(items, REQUEST).values()
    assert cause.causation_id == "batch-request"
    assert cause.correlation_id == "t"


def test_an_item_id_outside_printable_ascii_is_left_out_as_a_header_id_is() -> None:
    """Ids from X-Causation-ID and X-Request-ID are stored only in printable ASCII; the same ids
    named in a batch's body must not reach the store with a line break or an escape."""
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
