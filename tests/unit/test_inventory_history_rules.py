"""The history's cursor and the stream prefix a past state is folded from."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ticketing.inventory.domain import EVENT_STREAM, SeatsReserved
from ticketing.shared.errors import InvalidInput
from ticketing.shared.http.pagination import (
    VERSION_CURSOR_PATTERN,
    decode_version_cursor,
    encode_version_cursor,
)
from ticketing.shared.store.eventstore import Recorded, unbroken

START = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("version", [1, 2, 255, 256, 70_000, 2**31 - 1])
def test_a_version_cursor_round_trips_and_matches_its_pattern(version: int) -> None:
    cursor = encode_version_cursor(version)
    assert re.fullmatch(VERSION_CURSOR_PATTERN, cursor)
    assert decode_version_cursor(cursor) == version


@pytest.mark.parametrize("cursor", ["", "@@@", "AAAA", "AAAAAAAAAAAAAAAAAAAAAA", "A"])
def test_a_cursor_this_api_did_not_issue_is_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput, match="cursor"):
        decode_version_cursor(cursor)


def recorded(version: int, at: datetime) -> Recorded:
    stream = uuid.UUID(int=1)
    return Recorded(
        position=version,
        event_id=uuid.uuid4(),
        stream_id=stream,
        stream_type=EVENT_STREAM,
        version=version,
        event_type="SeatsReserved",
        event=SeatsReserved(
            event_id=stream, booking_id=uuid.uuid4(), ticket_count=1, left_capacity=1
        ),
        actor="test",
        correlation_id=None,
        causation_id=None,
        recorded_at=at,
    )


def test_a_past_state_stops_at_the_first_missing_version() -> None:
    # Version 3's instance had a clock behind version 2's: at a time between their stamps the
    # store answers versions 1 and 3, and the state then is version 1's alone.
    stream = [recorded(1, START), recorded(3, START + timedelta(seconds=1))]
    assert [r.version for r in unbroken(stream)] == [1]


def test_an_unbroken_stream_is_kept_whole() -> None:
    stream = [recorded(v, START + timedelta(seconds=v)) for v in (1, 2, 3)]
    assert unbroken(stream) == stream
    assert unbroken([]) == []
    assert unbroken([recorded(2, START)]) == []
