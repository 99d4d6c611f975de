"""The order saga's release step as a use case, on in-memory records and inventory: a confirmed
order's seats go back once, whatever comes twice, and a release that cannot be is never acked
(the SQL records are tested in tests/integration/test_order_releases.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import pytest

from tests.fakes.dead_letters import DeadLetters
from tests.harness.broker import as_the_runner_does
from tests.unit.order_saga import Saga, cancelled, delivered, expired, requested
from ticketing.contracts.events import (
    BOOKINGS_DLQ_TOPIC,
    BookingRequested,
    OrderConfirmed,
    OrderRejected,
    OrderReleased,
    SeatRelease,
)
from ticketing.contracts.inventory import ReleaseItemResult, ReleaseOutcome
from ticketing.order.consumer import ACCEPTED
from ticketing.order.domain import ImpossibleRelease, OrderStatus
from ticketing.order.service import CONSUMER
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.errors import Unavailable
from ticketing.shared.messaging.consumer import MessageRunner, Received


@pytest.mark.parametrize(("release", "reason"), [(cancelled, "cancelled"), (expired, "expired")])
async def test_a_release_gives_the_seats_back_and_records_it_after_the_confirmation(
    release: Callable[[BookingRequested], SeatRelease], reason: str
) -> None:
    saga = Saga(capacity=10)
    booked = await saga.booked(3)
    assert saga.left() == 7
    message = release(booked)
    await saga.handle(message, correlation_id="trace-release")
    ((item,),) = saga.inventory.release_calls
    assert (item.event_id, item.booking_id, item.reason) == (
        saga.event_id,
        booked.booking_id,
        reason,
    )
    assert (item.causation_id, item.correlation_id) == (str(message.message_id), "trace-release")
    assert saga.left() == 10
    confirmed, _ = saga.records.outcomes[booked.booking_id]
    event, cause = saga.records.releases[booked.booking_id]
    assert isinstance(event, OrderReleased)
    assert isinstance(confirmed, OrderConfirmed)
    assert (event.order_id, event.booking_id, event.event_id, event.ticket_count) == (
        confirmed.order_id,
        booked.booking_id,
        saga.event_id,
        3,
    )
    assert event.reason == reason
    assert (cause.actor, cause.causation_id, cause.correlation_id) == (
        CONSUMER,
        str(message.message_id),
        "trace-release",
    )
    assert message.message_id in saga.records.claimed
    assert saga.wakes == 2  # the relay is woken for the release as for the outcome
    (state,) = (await saga.records.orders([booked.booking_id])).values()
    assert (state.status, state.reason, state.version) == (OrderStatus.RELEASED, reason, 2)


async def test_a_redelivered_release_or_a_second_one_for_the_booking_is_applied_once() -> None:
    saga = Saga(capacity=4)
    booked = await saga.booked(2)
    cancel = cancelled(booked)
    await saga.handle(cancel)
    transactions = saga.records.transactions
    await saga.handle(cancel)  # redelivered
    await saga.handle(expired(booked))  # the hold's expiry, after the cancellation
    await saga.handle(cancel, cancelled(booked))  # both again, in one batch
    assert len(saga.inventory.release_calls) == 1  # the order says released: no more calls
    assert saga.records.transactions == transactions
    assert saga.left() == 4
    event, _ = saga.records.releases[booked.booking_id]
    assert isinstance(event, OrderReleased)
    assert event.reason == "cancelled"


async def test_two_releases_of_one_booking_at_once_record_one_and_ack_both() -> None:
    """Two replicas (or a cancel and an expiry) read the confirmed order at the same time: both
    ask inventory, which gives the seats back once; one release is recorded, the other is
    refused on the stream's version and acknowledged as applied."""
    saga = Saga(capacity=5)
    booked = await saga.booked(2)
    both = asyncio.Barrier(2)
    saga.inventory.pause = both.wait  # each release waits there until both have read the order
    await asyncio.gather(saga.handle(cancelled(booked)), saga.handle(expired(booked)))
    assert len(saga.inventory.release_calls) == 2
    assert saga.left() == 5
    assert len(saga.records.releases) == 1
    assert len(saga.records.streams[booked.booking_id]) == 2


async def test_a_batch_mixing_requests_and_releases_calls_each_once_in_one_transaction() -> None:
    """The seats go back before the batch's requests are reserved, so they may take them."""
    saga = Saga(capacity=6)
    first, second = await saga.booked(2), await saga.booked(2)
    calls, transactions = len(saga.inventory.calls), saga.records.transactions
    new = requested(saga.event_id, 3)
    await saga.handle(cancelled(first), new, expired(second), cancelled(first))
    assert len(saga.inventory.calls) == calls + 1
    assert len(saga.inventory.release_calls) == 1
    assert [i.booking_id for i in saga.inventory.release_calls[0]] == [
        first.booking_id,
        second.booking_id,
    ]
    assert saga.records.transactions == transactions + 1
    assert set(saga.records.releases) == {first.booking_id, second.booking_id}
    assert isinstance(saga.records.outcomes[new.booking_id][0], OrderConfirmed)
    assert saga.left() == 3


async def test_a_batch_with_a_request_applied_before_goes_one_by_one_and_releases_once() -> None:
    saga = Saga()
    booked = await saga.booked()
    batch = [Received(booked, None), Received(cancelled(booked), None)]
    with pytest.raises(AlreadyRecorded):  # the request's claim: the runner hands each over
        await saga.service.handle_batch(batch)
    await as_the_runner_does(saga.service.handle_batch, batch)
    assert len(saga.records.releases) == 1
    assert len(saga.records.outcomes) == 1
    assert saga.left() == 10


async def test_a_release_of_a_rejected_or_unknown_booking_is_refused_and_records_nothing() -> None:
    saga = Saga(capacity=1)
    rejected = requested(saga.event_id, 2)
    await saga.handle(rejected)
    unknown = requested(saga.event_id, 1)
    for message in (cancelled(rejected), expired(unknown)):
        with pytest.raises(ImpossibleRelease):
            await saga.handle(message)
    assert saga.inventory.release_calls == []
    assert saga.records.releases == {}
    assert saga.records.transactions == 1


async def test_a_release_inventory_holds_no_seats_for_is_refused_and_records_nothing() -> None:
    saga = Saga(capacity=5)
    booked = await saga.booked(2)
    for answer in (
        ReleaseItemResult(booked.booking_id, ReleaseOutcome.NOT_RESERVED),
        ReleaseItemResult(booked.booking_id, ReleaseOutcome.RELEASED, 1, 4),
    ):
        saga.inventory.answers[booked.booking_id] = answer
        with pytest.raises(ImpossibleRelease):
            await saga.handle(cancelled(booked))
    assert saga.records.releases == {}
    del saga.inventory.answers[booked.booking_id]
    await saga.handle(cancelled(booked))  # once inventory's data is right again
    assert booked.booking_id in saga.records.releases


async def test_an_impossible_release_fails_its_batch_and_alone_only_itself() -> None:
    saga = Saga(capacity=5)
    booked = await saga.booked(2)
    good, bad = cancelled(booked), cancelled(requested(saga.event_id))
    batch = [Received(good, None), Received(bad, None)]
    with pytest.raises(ImpossibleRelease):
        await saga.service.handle_batch(batch)
    assert saga.records.releases == {}
    await saga.service.handle_batch([batch[0]])
    with pytest.raises(ImpossibleRelease):
        await saga.service.handle_batch([batch[1]])
    assert set(saga.records.releases) == {booked.booking_id}


async def test_an_unreachable_inventory_releases_nothing_and_records_nothing() -> None:
    saga = Saga()
    booked = await saga.booked()
    saga.inventory.down = True
    with pytest.raises(Unavailable):
        await saga.handle(cancelled(booked))
    assert saga.records.releases == {}
    saga.inventory.down = False
    await saga.handle(cancelled(booked))
    assert booked.booking_id in saga.records.releases


async def test_the_runner_dead_letters_an_impossible_release_and_applies_the_rest() -> None:
    """Its batch fails; alone, every other message is applied, and the impossible release is
    retried, then sent to the dead-letter topic (never acknowledged as applied)."""
    saga = Saga(capacity=5)
    booked = await saga.booked(2)
    dead = DeadLetters()
    stand_in: object = dead
    runner = MessageRunner(
        stand_in,  # type: ignore[arg-type]
        dlq_topic=BOOKINGS_DLQ_TOPIC,
        accepted=ACCEPTED,
        max_attempts=3,
        max_backoff=0.01,
    )
    refused, new = requested(saga.event_id, 9), requested(saga.event_id, 1)
    impossible = cancelled(refused)
    batch: list[BookingRequested | SeatRelease] = [refused, cancelled(booked), new, impossible]
    await runner.run_batch(
        [delivered(n, m) for n, m in enumerate(batch)], saga.service.handle_batch
    )
    assert dead.published == [msgspec.json.encode(impossible)]
    assert isinstance(saga.records.outcomes[new.booking_id][0], OrderConfirmed)
    assert isinstance(saga.records.outcomes[refused.booking_id][0], OrderRejected)
    assert set(saga.records.releases) == {booked.booking_id}
    assert saga.left() == 4
