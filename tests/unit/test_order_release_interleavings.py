"""Generated deliveries of the bookings topic, through the consumer's runner on one or two
replicas at once, their batches and their calls interleaved at random: however requests and
releases come (again, together, in any order once booking has the confirmation), each booking
gets one outcome, at most one release and only of a confirmed order, and inventory gives each
booking's seats back at most once."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.dead_letters import DeadLetters
from tests.unit.order_saga import Saga, cancelled, delivered, expired, requested
from ticketing.contracts.events import (
    BOOKINGS_DLQ_TOPIC,
    BookingCancelled,
    BookingRequested,
    OrderConfirmed,
    OrderRejected,
    OrderReleased,
    SeatRelease,
)
from ticketing.inventory.domain import SeatsReleased
from ticketing.order.consumer import ACCEPTED
from ticketing.shared.messaging.consumer import Delivery, MessageRunner

CAPACITY = 20
Message = BookingRequested | SeatRelease


def pauses(lengths: list[int]) -> Callable[[], Awaitable[None]]:
    """A call's entry, where other tasks run for a while (as in a database round trip): each
    call lets them run as many times as the next of ``lengths`` says, round and round."""
    turns = itertools.cycle(lengths)

    async def pause() -> None:
        for _ in range(next(turns)):
            await asyncio.sleep(0)

    return pause


async def replica(saga: Saga, batches: list[list[Delivery]], dead: DeadLetters) -> None:
    """One consumer of the topic: its batches one after another, as its runner runs them. A
    record is dead-lettered at its first failure (none may fail)."""
    stand_in: object = dead
    runner = MessageRunner(
        stand_in,  # type: ignore[arg-type]
        dlq_topic=BOOKINGS_DLQ_TOPIC,
        accepted=ACCEPTED,
        max_attempts=1,
        max_backoff=0.001,
    )
    for batch in batches:
        await runner.run_batch(batch, saga.service.handle_batch)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
async def test_any_interleaving_releases_each_confirmed_booking_at_most_once(
    data: st.DataObject,
) -> None:
    saga = Saga(capacity=CAPACITY)
    tickets = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=4), label="tickets")
    booked = [requested(saga.event_id, count) for count in tickets]
    refused = requested(uuid.uuid4(), 1)  # an event inventory does not know: rejected
    first = [delivered(n, m) for n, m in enumerate([*booked, refused])]
    await replica(saga, [first], DeadLetters())  # booking hears of every confirmation first
    confirmed = [
        m for m in booked if isinstance(saga.records.outcomes[m.booking_id][0], OrderConfirmed)
    ]
    assert [m.booking_id for m in confirmed] == [m.booking_id for m in booked]

    # What booking may publish since: for each confirmed booking, a cancellation and an expiry
    # (at most one in truth; both, to be safe), and new requests; and anything redelivered.
    releases = [make(m) for m in confirmed for make in (cancelled, expired)]
    late = [requested(saga.event_id, 1) for _ in range(data.draw(st.integers(0, 2)))]
    pool: list[Message] = [*releases, *late, *booked, refused]
    picked = data.draw(
        st.lists(
            st.tuples(st.sampled_from(range(len(pool))), st.integers(0, 1), st.booleans()),
            min_size=1,
            max_size=12,
        ),
        label="deliveries (message, replica, starts a batch)",
    )
    lengths = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=20), label="pauses")
    saga.records.pause = saga.inventory.pause = pauses(lengths)
    batches: list[list[list[Delivery]]] = [[], []]
    delivered_messages: list[Message] = []
    for offset, (index, which, starts) in enumerate(picked, start=len(first)):
        message = pool[index]
        if starts or not batches[which]:
            batches[which].append([])
        batches[which][-1].append(delivered(offset, message))
        delivered_messages.append(message)
    dead = DeadLetters()
    await asyncio.gather(*(replica(saga, mine, dead) for mine in batches))

    assert dead.published == []
    asked = {m.booking_id for m in delivered_messages if not isinstance(m, BookingRequested)}
    reasons: dict[uuid.UUID, set[str]] = {}
    for m in delivered_messages:
        if not isinstance(m, BookingRequested):
            kind = "cancelled" if isinstance(m, BookingCancelled) else "expired"
            reasons.setdefault(m.booking_id, set()).add(kind)
    still_held = 0
    for message in [*booked, *[m for m in late if m in delivered_messages]]:
        stream = saga.records.streams[message.booking_id]
        assert set(stream) <= {1, 2}
        outcome = stream[1][0]
        assert isinstance(outcome, OrderConfirmed)
        if message.booking_id in asked:
            release = stream[2][0]
            assert isinstance(release, OrderReleased)
            assert release.order_id == outcome.order_id
            assert release.reason in reasons[message.booking_id]
            assert release.ticket_count == message.ticket_count
        else:
            assert 2 not in stream
            still_held += message.ticket_count
    assert list(saga.records.streams[refused.booking_id]) == [1]
    assert isinstance(saga.records.streams[refused.booking_id][1][0], OrderRejected)
    # Inventory gave back each asked booking's seats, once.
    given_back = [
        recorded.event.booking_id
        for stream in saga.inventory.inventory.records.streams.values()
        for recorded in stream.values()
        if isinstance(recorded.event, SeatsReleased)
    ]
    assert sorted(given_back) == sorted(asked)
    assert saga.left() == CAPACITY - still_held
    never = {m.booking_id for m in late if m not in delivered_messages}
    assert never.isdisjoint(saga.records.streams)
