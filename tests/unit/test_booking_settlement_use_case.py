"""Booking's settlement use case on in-memory records: outcomes settle their bookings once, each
with its own cause, redeliveries are applied before and skipped, and a duplicate the inbox never
saw is never acknowledged."""

from __future__ import annotations

import uuid

import pytest

from tests.harness.broker import as_the_runner_does
from tests.unit.booking_world import World, confirmation, rejection, world
from ticketing.booking.settlement import CONSUMER
from ticketing.contracts.booking import BookingStatus
from ticketing.contracts.events import OrderConfirmed, OrderRejected
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.messaging.consumer import Received

__all__ = ["world"]  # the fixture


async def test_outcomes_settle_their_bookings_each_with_its_own_cause(world: World) -> None:
    confirmed, rejected = await world.pending(2)
    confirm = confirmation(confirmed)
    outcomes: list[OrderConfirmed | OrderRejected] = [confirm, rejection(rejected)]
    await world.service.apply_saga_answers(
        [Received(outcome, f"trace-{n}") for n, outcome in enumerate(outcomes)]
    )
    assert world.status(confirmed) == (BookingStatus.CONFIRMED, 2)
    assert world.status(rejected) == (BookingStatus.REJECTED, 2)
    assert world.records.bookings[confirmed].booking.order_id == confirm.order_id
    assert world.records.bookings[rejected].booking.reason == "insufficient_capacity"
    for n, (booking_id, outcome) in enumerate(zip([confirmed, rejected], outcomes, strict=True)):
        settled = world.records.stream_of(booking_id)[1]
        assert settled.event_type == ("BookingConfirmed", "BookingRejected")[n]
        assert (settled.version, settled.actor, settled.causation_id, settled.correlation_id) == (
            2,
            CONSUMER,
            str(outcome.message_id),
            f"trace-{n}",
        )
    assert world.records.claimed == {o.message_id for o in outcomes}


async def test_an_outcome_for_an_unknown_or_settled_booking_is_ignored_but_claimed(
    world: World,
) -> None:
    settled, pending = await world.pending(2)
    await world.service.apply_saga_answers([Received(confirmation(settled), None)])
    batch: list[OrderConfirmed | OrderRejected] = [
        rejection(settled),
        confirmation(pending),
        confirmation(uuid.uuid4()),
    ]
    await world.service.apply_saga_answers([Received(outcome, None) for outcome in batch])
    assert world.status(settled) == (BookingStatus.CONFIRMED, 2)  # an outcome is final
    assert world.status(pending) == (BookingStatus.CONFIRMED, 2)
    assert world.records.stream_of(batch[2].booking_id) == []  # no stream begun by it
    assert {o.message_id for o in batch} <= world.records.claimed


async def test_two_outcomes_for_one_booking_in_a_batch_settle_it_once(world: World) -> None:
    (booking_id,) = await world.pending(1)
    first, second = rejection(booking_id), confirmation(booking_id)
    await world.service.apply_saga_answers([Received(first, None), Received(second, None)])
    assert world.status(booking_id) == (BookingStatus.REJECTED, 2)
    assert world.records.stream_of(booking_id)[1].causation_id == str(first.message_id)
    assert {first.message_id, second.message_id} <= world.records.claimed


async def test_a_redelivered_outcome_alone_is_applied_before_and_skipped(world: World) -> None:
    (booking_id,) = await world.pending(1)
    outcome = confirmation(booking_id)
    await world.service.apply_saga_answers([Received(outcome, None)])
    await world.service.apply_saga_answers([Received(outcome, None)])  # acked, nothing written
    assert len(world.records.stream_of(booking_id)) == 2


async def test_a_redelivered_outcome_in_a_batch_fails_it_whole_for_the_runner_to_split(
    world: World,
) -> None:
    done, waiting = await world.pending(2)
    old, new = confirmation(done), rejection(waiting)
    await world.service.apply_saga_answers([Received(old, None)])
    batch = [Received(old, None), Received(new, None)]
    with pytest.raises(AlreadyRecorded):
        await world.service.apply_saga_answers(batch)
    assert world.status(waiting) == (BookingStatus.PENDING, 1)  # nothing of the batch
    assert new.message_id not in world.records.claimed
    await as_the_runner_does(world.service.apply_saga_answers, batch)
    assert world.status(waiting) == (BookingStatus.REJECTED, 2)


async def test_a_duplicate_the_inbox_never_saw_is_never_acked(world: World) -> None:
    (booking_id,) = await world.pending(1)
    state = world.records.bookings[booking_id]
    world.records.bookings[booking_id] = type(state)(state.booking, 0)  # a row lagging its stream
    outcome = confirmation(booking_id)
    with pytest.raises(AlreadyRecorded):
        await world.service.apply_saga_answers([Received(outcome, None)])
    assert outcome.message_id not in world.records.claimed
    assert len(world.records.stream_of(booking_id)) == 1
