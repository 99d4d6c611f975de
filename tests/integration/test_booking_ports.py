"""Booking's records port, checked against the in-memory stand-in and the SQL adapter alike, so
that a rule the fake leaves out (or the adapter loses) shows up here as a failing case rather
than as a unit test that passes while production fails."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from tests.fakes.booking import InMemoryBookingRecords
from tests.harness.databases import engine_of, own_databases
from tests.integration.booking_db import CLIENT, new_booking
from ticketing.booking import domain
from ticketing.booking.changes import Change
from ticketing.booking.domain import BookingState, KeyTakenOver
from ticketing.booking.idempotency import KeyClaim, StoredKey
from ticketing.booking.ports import BookingRecords, SettleBookings
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.settlement import CONSUMER
from ticketing.contracts.booking import Booking, BookingStatus, Customer
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.ids import new_id
from ticketing.shared.store.eventstore import Cause


@pytest.fixture(params=["memory", "sql"])
async def records(request: pytest.FixtureRequest) -> AsyncIterator[BookingRecords]:
    if request.param == "memory":
        yield InMemoryBookingRecords()
        return
    async with own_databases("booking") as settings, engine_of(settings, "booking") as engine:
        yield SqlBookingRecords(engine, consumer=CONSUMER)


async def customer(records: BookingRecords, email: str = "ada@example.com") -> Customer:
    registered = domain.CustomerRegistered(
        customer_id=new_id(), name="Ada", email=email, address=None, registered_at=_now()
    )
    return await records.register_customer(registered, CLIENT)


def _now() -> datetime:
    return datetime.now(UTC)


def never(key: StoredKey) -> bool:
    return False


def always(key: StoredKey) -> bool:
    return True


async def key_of(records: BookingRecords, claim: KeyClaim) -> StoredKey | None:
    """The key ``claim`` names as stored, read by a request that never takes it over (None:
    it was free, and that request holds it now)."""
    return await records.claim_key(KeyClaim.new("box-office", claim.key), "probe", never)


async def test_an_email_taken_in_another_case_is_refused_and_records_nothing(
    records: BookingRecords,
) -> None:
    await customer(records, "ada@example.com")
    refused = domain.CustomerRegistered(
        customer_id=new_id(),
        name="Ada",
        email="ADA@Example.com",
        address=None,
        registered_at=_now(),
    )
    with pytest.raises(AlreadyRecorded):
        await records.register_customer(refused, CLIENT)
    assert await records.get_customer(refused.customer_id) is None
    assert await records.stream(refused.customer_id, until=_now()) == []


async def test_a_booking_is_recorded_with_its_event_its_cause_and_its_keys_answer(
    records: BookingRecords,
) -> None:
    owner = await customer(records)
    claim = KeyClaim.new("box-office", f"k-{uuid.uuid4()}")
    assert await records.claim_key(claim, "body-1", never) is None
    body = await records.add_booking(new_booking(owner.id, claim))
    booking = msgspec.json.decode(body, type=Booking)
    assert await records.get_booking(booking.id) == booking
    (requested,) = await records.stream(booking.id, until=_now())
    assert (requested.event_type, requested.version, requested.actor) == (
        "BookingRequested",
        1,
        "box-office",
    )
    assert (requested.correlation_id, requested.causation_id) == ("req-1", "req-1")
    assert requested.recorded_at == booking.created_at == requested.event.requested_at
    answered = await key_of(records, claim)
    assert answered is not None
    assert (answered.fingerprint, answered.booking_id, answered.response) == (
        "body-1",
        booking.id,
        body.decode(),
    )
    again = KeyClaim.new("box-office", claim.key)
    assert await records.claim_key(again, "body-1", always) == answered  # never taken over


async def test_a_key_taken_over_refuses_its_first_holder_who_records_nothing(
    records: BookingRecords,
) -> None:
    owner = await customer(records)
    first = KeyClaim.new("box-office", f"k-{uuid.uuid4()}")
    assert await records.claim_key(first, "body-1", never) is None
    retry = KeyClaim.new("box-office", first.key)
    held = await records.claim_key(retry, "body-1", never)
    assert held is not None
    assert (held.fingerprint, held.booking_id, held.response) == ("body-1", None, None)
    assert held.claimed_at.utcoffset() == timedelta(0)
    assert await records.claim_key(retry, "body-1", always) is None  # taken over
    lost = new_booking(owner.id, first)
    with pytest.raises(KeyTakenOver):
        await records.add_booking(lost)
    assert await records.get_booking(lost.booking.id) is None
    assert await records.stream(lost.booking.id, until=_now()) == []
    await records.release_key(first)  # the first holder's release leaves the retry's key
    assert await key_of(records, first) is not None
    await records.release_key(retry)
    assert await key_of(records, first) is None  # free: the probe holds it now


async def test_settling_claims_the_messages_and_a_repeat_or_a_stale_version_is_refused(
    records: BookingRecords,
) -> None:
    owner = await customer(records)
    booking = new_booking(owner.id)
    await records.add_booking(booking)
    booking_id = booking.booking.id
    seen: list[tuple[dict[uuid.UUID, int], datetime]] = []

    def confirm(locked: Mapping[uuid.UUID, BookingState], now: datetime) -> list[Change]:
        seen.append(({i: s.version for i, s in locked.items()}, now))
        event = domain.BookingConfirmed(
            booking_id=booking_id, order_id=uuid.uuid4(), confirmed_at=now
        )
        after = domain.evolve(BookingState(booking.booking, 1, CLIENT.actor), event)
        return [Change([event], Cause(CONSUMER, "trace", "m-1"), 1, after)]

    message, unknown = uuid.uuid4(), uuid.uuid4()
    await records.settle(SettleBookings([message], [booking_id, unknown], confirm))
    assert seen[0][0] == {booking_id: 1}  # unknown bookings are left out
    assert seen[0][1].utcoffset() == timedelta(0)
    assert await records.has_seen(message)
    settled = await records.get_booking(booking_id)
    assert settled is not None
    assert settled.status is BookingStatus.CONFIRMED
    _, confirmed = await records.stream(booking_id, until=_now())
    assert (confirmed.version, confirmed.actor, confirmed.causation_id) == (2, CONSUMER, "m-1")
    assert confirmed.correlation_id == "trace"
    with pytest.raises(AlreadyRecorded):  # the message again
        await records.settle(SettleBookings([message], [booking_id], lambda locked, now: []))
    stale = uuid.uuid4()
    with pytest.raises(AlreadyRecorded):  # version 2 of the stream is taken
        await records.settle(SettleBookings([stale], [booking_id], confirm))
    assert not await records.has_seen(stale)
    assert len(await records.stream(booking_id, until=_now())) == 2


async def test_a_message_twice_in_one_call_is_refused_and_records_nothing(
    records: BookingRecords,
) -> None:
    message = uuid.uuid4()
    with pytest.raises(AlreadyRecorded):
        await records.settle(SettleBookings([message, message], [], lambda locked, now: []))
    assert not await records.has_seen(message)


async def test_reads_page_by_id_and_by_version(records: BookingRecords) -> None:
    owner = await customer(records)
    ids = []
    for _ in range(3):
        item = new_booking(owner.id)
        await records.add_booking(item)
        ids.append(item.booking.id)
    assert await records.customer_exists(owner.id)
    assert not await records.customer_exists(uuid.uuid4())
    listed = await records.list_bookings(owner.id, limit=2, after=None)
    assert [b.id for b in listed] == sorted(ids)[:2]
    rest = await records.list_bookings(owner.id, limit=2, after=listed[-1].id)
    assert [b.id for b in rest] == sorted(ids)[2:]
    items, cursor = await records.history(ids[0], limit=1, cursor=None)
    assert ([e.type for e in items], cursor) == (["BookingRequested"], None)
    (requested,) = await records.stream(ids[0], until=_now())
    before = requested.recorded_at - timedelta(microseconds=1)
    assert await records.stream(ids[0], until=before) == []


async def test_keys_older_than_the_retention_are_purged(records: BookingRecords) -> None:
    claim = KeyClaim.new("box-office", f"k-{uuid.uuid4()}")
    assert await records.claim_key(claim, "body-1", never) is None
    assert await records.purge_keys(timedelta(hours=1)) == 0
    await asyncio.sleep(0.01)
    assert await records.purge_keys(timedelta(milliseconds=5)) == 1
    assert await key_of(records, claim) is None


# (registered first, registered next, whether the database takes them for one email)
PAIRS = [
    ("jose", "JOSÉ", True),  # accents are ignored as case is
    ("ada", "ａｄａ", True),  # full-width forms are their plain letters
    ("strasse", "straße", True),
    ("ab", "a\u200bb", True),  # an ignorable character
    ("ae", "æ", False),  # a letter of its own, not a ligature of two
    ("o", "ø", False),
    ("x\U0001f600", "x\U0001f601", True),  # every character past U+FFFF weighs alike
    ("a", "\U0001d400", False),  # so a mathematical A is no plain one
]


async def test_emails_the_collation_takes_for_one_are_refused_and_no_others(
    records: BookingRecords,
) -> None:
    refused: list[bool] = []
    for n, (first, second, _) in enumerate(PAIRS):
        domain = f"@d{n}.example.com"
        await customer(records, first + domain)
        try:
            await customer(records, second + domain)
        except AlreadyRecorded:
            refused.append(True)
        else:
            refused.append(False)
    assert refused == [same for _, _, same in PAIRS]
