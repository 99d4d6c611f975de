"""The order saga step as a use case, on in-memory records and an in-memory inventory (fast;
the SQL records and the HTTP client are tested against the real things in tests/integration).
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from tests.fakes.order import InMemoryOrderRecords, SagaInventory
from tests.harness.broker import as_the_runner_does
from tests.unit.order_saga import requested
from ticketing.contracts.events import OrderConfirmed, OrderRejected
from ticketing.contracts.inventory import (
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
)
from ticketing.order.service import CONSUMER, OrderService
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.errors import Unavailable
from ticketing.shared.messaging.consumer import Received


def service() -> tuple[OrderService, InMemoryOrderRecords, SagaInventory, list[None]]:
    records, inventory = InMemoryOrderRecords(), SagaInventory()
    wakes: list[None] = []
    return (
        OrderService(records, inventory, after_commit=lambda: wakes.append(None)),
        records,
        inventory,
        wakes,
    )


async def test_a_batch_reserves_once_and_records_each_outcome_with_its_cause() -> None:
    orders, records, inventory, wakes = service()
    event_id = inventory.schedule(capacity=3)
    batch = [requested(event_id, 2), requested(event_id, 2), requested(uuid.uuid4())]
    await orders.handle_batch([Received(m, f"trace-{n}") for n, m in enumerate(batch)])
    assert len(inventory.calls) == 1  # one reservation call for the batch
    assert records.transactions == 1
    assert wakes == [None]  # the relay is woken once the outcomes are recorded
    outcomes = [records.outcomes[m.booking_id] for m in batch]
    assert isinstance(outcomes[0][0], OrderConfirmed)
    assert isinstance(outcomes[1][0], OrderRejected)
    assert outcomes[1][0].reason == "insufficient_capacity"
    assert isinstance(outcomes[2][0], OrderRejected)
    assert outcomes[2][0].reason == "event_not_found"
    for n, (message, (_, cause)) in enumerate(zip(batch, outcomes, strict=True)):
        assert (cause.actor, cause.causation_id, cause.correlation_id) == (
            CONSUMER,
            str(message.message_id),
            f"trace-{n}",
        )


async def test_a_redelivered_message_is_applied_once_whatever_batch_it_comes_in() -> None:
    orders, records, inventory, _ = service()
    event_id = inventory.schedule(capacity=10)
    first, second = requested(event_id), requested(event_id)
    await orders.handle_batch([Received(first, None)])
    again = [Received(first, None), Received(second, None)]
    with pytest.raises(AlreadyRecorded):  # the runner then hands each over alone
        await orders.handle_batch(again)
    await as_the_runner_does(orders.handle_batch, again)
    await orders.handle_batch([Received(first, None)])  # alone: applied before, skipped
    assert set(records.outcomes) == {first.booking_id, second.booking_id}
    assert inventory.left(event_id) == 8  # the repeats reserved nothing more


async def test_another_message_for_a_booking_with_its_outcome_is_skipped() -> None:
    orders, records, inventory, _ = service()
    event_id = inventory.schedule(capacity=10)
    first = requested(event_id)
    await orders.handle_batch([Received(first, None)])
    recorded = records.outcomes[first.booking_id]
    other = dataclasses.replace(first, message_id=uuid.uuid4())
    await orders.handle_batch([Received(other, None)])
    assert records.outcomes[first.booking_id] == recorded  # never a second order
    third = dataclasses.replace(first, message_id=uuid.uuid4())
    twice = [Received(first, None), Received(third, None)]
    await as_the_runner_does(orders.handle_batch, twice)
    assert len(records.outcomes) == 1


async def test_a_duplicate_that_is_neither_a_claim_nor_an_outcome_is_never_acked() -> None:
    orders, records, inventory, _ = service()
    stray = requested(inventory.schedule(1))
    records.stray_rows.add(stray.booking_id)
    with pytest.raises(AlreadyRecorded):
        await orders.handle_batch([Received(stray, None)])
    assert records.outcomes == {}


async def test_an_unreachable_inventory_records_nothing() -> None:
    orders, records, inventory, wakes = service()
    inventory.down = True
    with pytest.raises(Unavailable):
        await orders.handle_batch([Received(requested(inventory.schedule(1)), None)])
    assert records.outcomes == {}
    assert wakes == []


async def test_a_reservation_names_the_customer_whose_limit_inventory_keeps() -> None:
    orders, _, inventory, _ = service()
    message = requested(inventory.schedule(capacity=5), 2)
    await orders.handle_batch([Received(message, "trace")])
    ((item,),) = inventory.calls
    assert (item.booking_id, item.customer_id, item.ticket_count) == (
        message.booking_id,
        message.customer_id,
        2,
    )
    assert (item.causation_id, item.correlation_id) == (str(message.message_id), "trace")


class OverLimit(SagaInventory):
    """An inventory whose events let each customer have no more seats than they hold."""

    async def reserve_many(
        self, items: list[ReservationItem], *, correlation_id: str | None = None
    ) -> list[ReservationItemResult]:
        return [ReservationItemResult(i.booking_id, ReservationOutcome.OVER_LIMIT) for i in items]


async def test_a_booking_over_its_customers_limit_is_rejected_saying_so() -> None:
    records = InMemoryOrderRecords()
    message = requested(uuid.uuid4())
    await OrderService(records, OverLimit()).handle_batch([Received(message, None)])
    rejection, _ = records.outcomes[message.booking_id]
    assert isinstance(rejection, OrderRejected)
    assert rejection.reason == "customer_limit_reached"
