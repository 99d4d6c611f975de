"""The event store's codec: inventory's events survive a round trip through JSON, a row in an
older shape is upcast one version at a time, and a row this code cannot read is refused."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketing.inventory.domain import (
    EVENT_TYPES,
    EventScheduled,
    InventoryEvent,
    ReservationRefused,
    SeatsReserved,
    VenueRegistered,
)
from ticketing.shared.store.codec import EventCodec, UnknownEventType, Upcaster

CODEC = EventCodec(EVENT_TYPES)

# Any text JSON can carry: lone surrogates cannot be encoded as UTF-8 at all.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
INTS = st.integers(-(2**63), 2**63 - 1)
# RFC 3339 offsets are whole minutes; those are what the API's aware datetimes carry.
OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
AWARE = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=OFFSETS
)

INVENTORY_EVENTS: st.SearchStrategy[InventoryEvent] = st.one_of(
    st.builds(VenueRegistered, venue_id=st.uuids(), name=TEXT, address=TEXT, total_capacity=INTS),
    st.builds(
        EventScheduled,
        event_id=st.uuids(),
        venue_id=st.uuids(),
        name=TEXT,
        total_capacity=INTS,
        ticket_price=TEXT,
        starts_at=st.none() | AWARE,
    ),
    st.builds(
        SeatsReserved,
        event_id=st.uuids(),
        booking_id=st.uuids(),
        ticket_count=INTS,
        left_capacity=INTS,
    ),
    st.builds(
        ReservationRefused,
        event_id=st.uuids(),
        booking_id=st.uuids(),
        ticket_count=INTS,
        left_capacity=INTS,
    ),
)


@given(INVENTORY_EVENTS)
def test_every_inventory_event_survives_a_round_trip(event: InventoryEvent) -> None:
    payload = CODEC.encode(event)
    decoded = CODEC.decode(type(event).__name__, type(event).SCHEMA_VERSION, payload)
    assert type(decoded) is type(event)
    assert decoded == event
    if isinstance(event, EventScheduled) and event.starts_at is not None:
        assert isinstance(decoded, EventScheduled)
        assert decoded.starts_at is not None
        assert decoded.starts_at.utcoffset() == event.starts_at.utcoffset()


def test_the_codec_knows_every_inventory_event_type() -> None:
    assert set(CODEC.types) == {cls.__name__ for cls in EVENT_TYPES}


# --- upcasting: a test-only event whose shape changed twice.
#   v1: {"event": id, "name": str, "sections": "A,B"}
#   v2: {"event_id": id, "title": str, "sections": "A,B"}         (fields renamed)
#   v3: {"event_id": id, "title": str, "sections": ["A", "B"], "published_at": ...}


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatMapPublished:
    SCHEMA_VERSION: ClassVar[int] = 3
    event_id: uuid.UUID
    title: str
    sections: list[str]
    published_at: datetime | None


def upcasters(applied: list[int]) -> dict[tuple[str, int], Upcaster]:
    """The two steps, each recording that it ran; the second reads the field the first
    renamed, so running them out of order fails."""

    def v1_to_v2(shape: dict[str, Any]) -> dict[str, Any]:
        applied.append(1)
        shape = dict(shape)
        shape["event_id"] = shape.pop("event")
        shape["title"] = shape.pop("name")
        return shape

    def v2_to_v3(shape: dict[str, Any]) -> dict[str, Any]:
        applied.append(2)
        sections = shape["sections"].split(",")
        return {**shape, "title": shape["title"], "sections": sections, "published_at": None}

    return {("SeatMapPublished", 1): v1_to_v2, ("SeatMapPublished", 2): v2_to_v3}


EVENT_ID = uuid.UUID("0190a6f2-0000-7000-8000-000000000001")
V1 = msgspec.json.encode({"event": str(EVENT_ID), "name": "Main hall", "sections": "A,B"})
V2 = msgspec.json.encode({"event_id": str(EVENT_ID), "title": "Main hall", "sections": "A,B"})
UPCAST = SeatMapPublished(
    event_id=EVENT_ID, title="Main hall", sections=["A", "B"], published_at=None
)


def test_an_old_shape_is_upcast_one_version_at_a_time_in_order() -> None:
    applied: list[int] = []
    codec = EventCodec([SeatMapPublished], upcasters(applied))
    assert codec.decode("SeatMapPublished", 1, V1) == UPCAST
    assert applied == [1, 2]


def test_a_shape_one_version_behind_takes_only_the_last_step() -> None:
    applied: list[int] = []
    codec = EventCodec([SeatMapPublished], upcasters(applied))
    assert codec.decode("SeatMapPublished", 2, V2.decode()) == UPCAST
    assert applied == [2]


@given(st.none() | AWARE)
def test_the_current_shape_is_decoded_without_upcasting(published_at: datetime | None) -> None:
    applied: list[int] = []
    codec = EventCodec([SeatMapPublished], upcasters(applied))
    event = SeatMapPublished(
        event_id=EVENT_ID, title="Grande salle", sections=["Parterre"], published_at=published_at
    )
    assert codec.decode("SeatMapPublished", 3, codec.encode(event)) == event
    assert applied == []


def test_an_upcast_shape_is_converted_to_the_fields_types() -> None:
    def v2_to_v3(shape: dict[str, Any]) -> dict[str, Any]:
        return {**shape, "sections": [], "published_at": "2030-05-01T20:00:00+02:00"}

    codec = EventCodec([SeatMapPublished], {("SeatMapPublished", 2): v2_to_v3})
    decoded = codec.decode("SeatMapPublished", 2, V2)
    assert decoded.event_id == EVENT_ID
    assert decoded.published_at == datetime(2030, 5, 1, 20, tzinfo=timezone(timedelta(hours=2)))


@pytest.mark.parametrize("missing", [1, 2])
def test_a_missing_upcaster_makes_an_old_shape_unreadable(missing: int) -> None:
    steps = upcasters([])
    del steps["SeatMapPublished", missing]
    codec = EventCodec([SeatMapPublished], steps)
    with pytest.raises(UnknownEventType, match=f"no upcaster for SeatMapPublished v{missing}"):
        codec.decode("SeatMapPublished", 1, V1)


def test_an_unknown_event_type_is_unreadable() -> None:
    with pytest.raises(UnknownEventType, match="unknown event type"):
        CODEC.decode("SeatMapPublished", 3, "{}")


def test_a_shape_newer_than_the_code_is_unreadable() -> None:
    event = SeatsReserved(
        event_id=uuid.uuid4(), booking_id=uuid.uuid4(), ticket_count=1, left_capacity=0
    )
    with pytest.raises(UnknownEventType, match="newer than this code"):
        CODEC.decode("SeatsReserved", SeatsReserved.SCHEMA_VERSION + 1, CODEC.encode(event))


def test_an_event_type_of_another_store_is_not_encoded() -> None:
    with pytest.raises(UnknownEventType, match="not an event type of this store"):
        CODEC.encode(UPCAST)


def test_a_lookalike_of_a_registered_type_is_not_encoded() -> None:
    """Only the registered class itself: a same-named class of another module would be stored
    under a name that decodes to a different type."""

    @dataclass(frozen=True, slots=True)
    class VenueRegistered:
        SCHEMA_VERSION: ClassVar[int] = 1
        venue_id: str

    with pytest.raises(UnknownEventType):
        CODEC.encode(VenueRegistered("not a venue"))
