"""Booking's use cases on in-memory records and an in-memory inventory (fast; the SQL records
and the HTTP client are tested against the real things in tests/integration)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from tests.unit.booking_world import ABANDONED_AFTER, CLIENT, World, rejection, world
from ticketing.booking.domain import KeyInFlight, KeyTakenOver, fingerprint
from ticketing.booking.idempotency import KeyClaim
from ticketing.booking.requests import Accepted
from ticketing.contracts.booking import Booking, BookingStatus
from ticketing.shared.errors import Conflict, InvalidInput, NotFound, Unavailable, Unprocessable
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause

__all__ = ["world"]  # the fixture


# Customers ---------------------------------------------------------------------------------


async def test_a_customer_is_its_event_and_a_taken_email_is_a_conflict(world: World) -> None:
    (registered,) = world.records.stream_of(world.customer_id)
    assert (registered.event_type, registered.version, registered.actor) == (
        "CustomerRegistered",
        1,
        "box-office",
    )
    assert (registered.correlation_id, registered.causation_id) == ("req-1", "req-1")
    with pytest.raises(Conflict, match="already exists"):
        await world.register("ADA@example.com")  # the column's collation ignores case
    assert len(world.records.events) == 1  # the refused one recorded nothing
    assert (await world.service.get_customer(world.customer_id)).email == "ada@example.com"
    with pytest.raises(NotFound):
        await world.service.get_customer(uuid.uuid4())


# Accepting a booking -----------------------------------------------------------------------


async def test_a_booking_is_accepted_as_its_event_with_the_cause_of_its_request(
    world: World,
) -> None:
    accepted = await world.book(world.request(2))
    assert not accepted.replayed
    booking = msgspec.json.decode(accepted.body, type=Booking)
    assert booking == world.records.bookings[accepted.booking_id].booking
    assert (booking.status, booking.unit_price, booking.total_price) == (
        BookingStatus.PENDING,
        "25.00",
        "50.00",
    )
    (requested,) = world.records.stream_of(booking.id)
    assert (requested.event_type, requested.version) == ("BookingRequested", 1)
    assert (requested.actor, requested.correlation_id) == ("box-office", "req-1")
    assert requested.event_id == requested.event.message_id  # published under its message id
    # The booking exists as of the moment its event was recorded.
    assert booking.created_at == requested.event.requested_at == requested.recorded_at
    assert world.inventory.reads == ["req-1"]  # inventory asked under the request's id


async def test_a_key_replays_its_first_answer_and_writes_nothing_more(world: World) -> None:
    first = await world.book(world.request(2), key="k-1")
    again = await world.book(world.request(2), key="k-1")
    assert (again.replayed, again.booking_id, again.body) == (True, first.booking_id, first.body)
    assert list(world.records.bookings) == [first.booking_id]
    assert len(world.inventory.reads) == 1  # a replay asks nobody
    # Keys are each client's own: another client's same key is another request.
    other = await world.book(world.request(2), key="k-1", cause=Cause("other-client"))
    assert not other.replayed
    assert len(world.records.bookings) == 2


async def test_a_key_used_with_another_body_is_unprocessable(world: World) -> None:
    await world.book(world.request(2), key="k-1")
    with pytest.raises(Unprocessable):
        await world.book(world.request(3), key="k-1")
    assert len(world.records.bookings) == 1


async def test_a_key_in_flight_is_a_conflict_until_its_request_is_abandoned(
    world: World,
) -> None:
    data = world.request(2)
    holder = KeyClaim.new(CLIENT.actor, "k-1")
    taken = await world.records.claim_key(
        holder, fingerprint(msgspec.json.encode(data)), lambda key: False
    )
    assert taken is None
    with pytest.raises(KeyInFlight):
        await world.book(data, key="k-1")
    assert world.records.bookings == {}
    assert world.records.keys[(holder.client, holder.key)][0] == holder.token  # still its own
    world.records.age_keys(ABANDONED_AFTER * 2)
    with pytest.raises(Unprocessable):  # another body never takes a key over
        await world.book(world.request(3), key="k-1")
    retry = await world.book(data, key="k-1")  # the same body does, once it is abandoned
    assert not retry.replayed
    assert list(world.records.bookings) == [retry.booking_id]


async def test_a_request_whose_key_a_retry_took_over_writes_nothing(world: World) -> None:
    data = world.request(2)
    retried: list[Accepted] = []

    async def retry_while_in_flight() -> None:
        world.records.age_keys(ABANDONED_AFTER * 2)
        retried.append(await world.book(data, key="k-1"))

    world.inventory.before_read = retry_while_in_flight
    with pytest.raises(KeyTakenOver):
        await world.book(data, key="k-1")
    (retry,) = retried
    assert list(world.records.bookings) == [retry.booking_id]
    assert len(world.records.stream_of(retry.booking_id)) == 1
    assert len(world.records.events) == 2  # the customer and the retry's booking
    replay = await world.book(data, key="k-1")  # the failed request did not free the key
    assert (replay.replayed, replay.body) == (True, retry.body)


async def test_an_unknown_customer_is_not_found_and_frees_the_key(world: World) -> None:
    stranger = msgspec.structs.replace(world.request(2), customer_id=uuid.uuid4())
    with pytest.raises(NotFound, match="customer"):
        await world.book(stranger, key="k-1")
    assert world.records.bookings == {}
    assert world.records.keys == {}
    assert world.inventory.reads == []  # refused before inventory is asked
    accepted = await world.book(world.request(2), key="k-1")  # the key is free for a new body
    assert not accepted.replayed


async def test_an_unreachable_inventory_is_unavailable_and_frees_the_key(world: World) -> None:
    world.inventory.down = True
    with pytest.raises(Unavailable):
        await world.book(world.request(2), key="k-1")
    assert world.records.bookings == {}
    assert world.records.keys == {}
    world.inventory.down = False
    accepted = await world.book(world.request(2), key="k-1")
    assert not accepted.replayed


async def test_an_unknown_event_is_not_found(world: World) -> None:
    with pytest.raises(NotFound, match="event"):
        await world.book(world.request(2, event_id=uuid.uuid4()))
    assert world.records.bookings == {}


async def test_too_many_tickets_or_too_few_left_are_refused_and_write_nothing(
    world: World,
) -> None:
    with pytest.raises(InvalidInput, match="over the limit"):
        await world.book(world.request(5), key="k-1")
    almost_full = world.inventory.schedule(left_capacity=3)
    with pytest.raises(Conflict) as refused:
        await world.book(world.request(4, event_id=almost_full), key="k-2")
    assert refused.value.extensions == {"left_capacity": 3}
    assert world.records.bookings == {}
    assert world.records.keys == {}


async def test_a_known_customer_is_not_looked_up_again(world: World) -> None:
    await world.pending(3)
    assert world.records.customer_lookups == 1


# Reads -------------------------------------------------------------------------------------


async def test_reads_serve_what_the_use_cases_recorded(world: World) -> None:
    first, second, third = await world.pending(3)
    await world.service.apply_saga_answers([Received(rejection(first), None)])
    requested, settled = world.records.stream_of(first)
    before = await world.service.get_booking(
        first, as_of=settled.recorded_at - timedelta(microseconds=1)
    )
    assert before.status is BookingStatus.PENDING
    assert await world.service.get_booking(first, as_of=settled.recorded_at) == (
        await world.service.get_booking(first)
    )
    for missing, as_of in [
        (first, requested.recorded_at - timedelta(microseconds=1)),
        (world.customer_id, datetime.now(UTC)),  # a customer's stream names no booking
    ]:
        with pytest.raises(NotFound):
            await world.service.get_booking(missing, as_of=as_of)
    page = await world.service.booking_history(first, limit=1, cursor=None)
    assert [e.type for e in page.items] == ["BookingRequested"]
    rest = await world.service.booking_history(first, limit=1, cursor=page.next_cursor)
    assert ([e.type for e in rest.items], rest.next_cursor) == (["BookingRejected"], None)
    listed = await world.service.list_bookings(world.customer_id, limit=2, cursor=None)
    assert [b.id for b in listed.items] == sorted([first, second, third])[:2]
    assert listed.next_cursor is not None
    with pytest.raises(NotFound):
        await world.service.list_bookings(uuid.uuid4(), limit=2, cursor=None)
    with pytest.raises(NotFound):
        await world.service.booking_history(uuid.uuid4(), limit=1, cursor=None)


async def test_keys_past_their_retention_are_purged(world: World) -> None:
    await world.book(world.request(1), key="old")
    world.records.age_keys(timedelta(hours=2))
    await world.book(world.request(1), key="new")
    assert await world.service.requests.purge_idempotency_keys(timedelta(hours=1)) == 1
    assert [name[1] for name in world.records.keys] == ["new"]
