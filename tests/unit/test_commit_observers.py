"""The observers of booking's commits are told once the change is committed: one that fails
must neither turn the committed change into an error (a confirm answered 500, a consumer batch
handed back to be retried message by message) nor keep the others from being told."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from structlog.testing import capture_logs

from tests.fakes.booking import InMemoryBookingRecords, InMemoryEvents
from tests.unit.booking_world import CLIENT, confirmation
from ticketing.booking.changes import Change
from ticketing.booking.lifecycle import Caller
from ticketing.booking.ports import CommitObservers
from ticketing.booking.service import BookingService
from ticketing.contracts.booking import BookingCreate, BookingStatus, CustomerCreate
from ticketing.shared.messaging.consumer import Received


class Failing:
    def committed(self, changes: Sequence[Change]) -> None:
        raise RuntimeError("observer broke")

    def settled(self, changes: Sequence[Change], now: datetime) -> None:
        raise RuntimeError("observer broke")


class Told:
    def __init__(self) -> None:
        self.committed_to: list[BookingStatus] = []
        self.settled_count = 0

    def committed(self, changes: Sequence[Change]) -> None:
        self.committed_to += [change.state.booking.status for change in changes]

    def settled(self, changes: Sequence[Change], now: datetime) -> None:
        self.settled_count += len(changes)


async def test_a_failing_observer_breaks_neither_the_use_case_nor_the_other_observers() -> None:
    records, inventory, told = InMemoryBookingRecords(), InMemoryEvents(), Told()
    service = BookingService(
        records, inventory, max_tickets=4, observer=CommitObservers(Failing(), told)
    )
    customer = await service.create_customer(CustomerCreate("Ada", "ada@example.com"), CLIENT)
    data = BookingCreate(customer.id, inventory.schedule(10), 1, hold=True)
    booking_id = (
        await service.requests.request_booking(data, raw_body=b"{}", cause=CLIENT)
    ).booking_id
    with capture_logs() as logs:
        await service.apply_saga_answers([Received(confirmation(booking_id), None)])
        confirmed = await service.confirm(booking_id, Caller(CLIENT.actor), CLIENT)
    assert confirmed.status is BookingStatus.CONFIRMED
    assert told.committed_to == [BookingStatus.HELD, BookingStatus.CONFIRMED]
    assert told.settled_count == 1
    failed = [entry for entry in logs if entry["event"] == "commit observer failed"]
    assert [entry["observer"] for entry in failed] == ["Failing"] * 3
    assert records.bookings[booking_id].booking.status is BookingStatus.CONFIRMED
