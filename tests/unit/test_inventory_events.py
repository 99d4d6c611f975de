"""Inventory's decider: ``decide`` turns a batch of reservation requests into events,
``evolve``/``fold`` turn events into states, and the two must agree.

The property tests start from event states folded from a generated history (scheduled, then
some reservations), so the reservations already recorded in ``existing`` are the ones the
history holds, and a batch mixes repeats, reused booking ids and unknown events.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketing.contracts.inventory import (
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
)
from ticketing.inventory.decisions import Decisions, decide
from ticketing.inventory.domain import (
    EventScheduled,
    EventState,
    EventStreamEvent,
    InventoryEvent,
    ReservationRefused,
    SeatsReserved,
    VenueState,
    decide_register_venue,
    decide_schedule_event,
    evolve,
    fold,
)
from ticketing.inventory.reservation import Reservation, reservation_of
from ticketing.shared.errors import ImpossibleHistory, InvalidInput

MAX_CAPACITY = 8


def event_state(events: Iterable[EventStreamEvent]) -> EventState:
    state = fold(events)
    assert isinstance(state, EventState)
    return state


def reserve(state: EventState, booking_id: uuid.UUID, count: int) -> EventStreamEvent:
    """What a reservation of ``count`` seats records (the rule the history is built with)."""
    if count <= state.left_capacity:
        return SeatsReserved(
            event_id=state.id,
            booking_id=booking_id,
            ticket_count=count,
            left_capacity=state.left_capacity - count,
        )
    return ReservationRefused(
        event_id=state.id,
        booking_id=booking_id,
        ticket_count=count,
        left_capacity=state.left_capacity,
    )


def scheduled(event_id: uuid.UUID, capacity: int) -> EventScheduled:
    return EventScheduled(
        event_id=event_id,
        venue_id=uuid.uuid4(),
        name="Concert",
        total_capacity=capacity,
        ticket_price="10.00",
        starts_at=None,
    )


@dataclasses.dataclass(frozen=True)
class Scenario:
    histories: dict[uuid.UUID, list[EventStreamEvent]]  # every known event's stream so far
    items: list[ReservationItem]

    @property
    def states(self) -> dict[uuid.UUID, EventState]:
        return {event_id: event_state(history) for event_id, history in self.histories.items()}

    @property
    def existing(self) -> dict[uuid.UUID, Reservation]:
        return {
            event.booking_id: reservation_of(event)
            for history in self.histories.values()
            for event in history
            if isinstance(event, SeatsReserved | ReservationRefused)
        }


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    event_ids = draw(st.lists(st.uuids(), min_size=2, max_size=5, unique=True))
    known = event_ids[:-1]  # the last one is never scheduled
    bookings = draw(st.lists(st.uuids(), min_size=1, max_size=8, unique=True))
    counts = st.integers(1, MAX_CAPACITY + 2)
    histories: dict[uuid.UUID, list[EventStreamEvent]] = {
        event_id: [scheduled(event_id, draw(st.integers(1, MAX_CAPACITY)))] for event_id in known
    }
    recorded = draw(st.lists(st.sampled_from(bookings), unique=True, max_size=len(bookings) - 1))
    for booking_id in recorded:
        history = histories[draw(st.sampled_from(known))]
        history.append(reserve(event_state(history), booking_id, draw(counts)))
    items = draw(
        st.lists(
            st.builds(
                ReservationItem,
                event_id=st.sampled_from(event_ids),
                booking_id=st.sampled_from(bookings),
                ticket_count=counts,
            ),
            min_size=1,
            max_size=12,
        )
    )
    return Scenario(histories, items)


def answer_of(reservation: Reservation) -> ReservationItemResult:
    return ReservationItemResult(
        reservation.booking_id,
        ReservationOutcome(reservation.status.value),
        reservation.left_capacity,
    )


def check_streams(scenario: Scenario, decisions: Decisions) -> None:
    """Each stream's new events follow its version, keep the seats left at or above zero,
    refuse only what did not fit, and fold into exactly the state ``decide`` returned."""
    grouped: dict[uuid.UUID, list[tuple[int, SeatsReserved | ReservationRefused]]] = {}
    for version, event in decisions.events:
        grouped.setdefault(event.event_id, []).append((version, event))
    assert set(grouped) == set(decisions.states)
    for event_id, appended in grouped.items():
        before = scenario.states[event_id]
        versions = [version for version, _ in appended]
        assert versions == list(range(before.version + 1, before.version + 1 + len(appended)))
        new_events = [event for _, event in appended]
        after = decisions.states[event_id]
        assert event_state([*scenario.histories[event_id], *new_events]) == after
        check_seats(before, new_events)
        reserved = sum(e.ticket_count for e in new_events if isinstance(e, SeatsReserved))
        assert before.left_capacity - after.left_capacity == reserved
        ever_reserved = reserved + sum(
            e.ticket_count for e in scenario.histories[event_id] if isinstance(e, SeatsReserved)
        )
        assert after.total_capacity - after.left_capacity == ever_reserved
        assert after.left_capacity >= 0


def check_seats(before: EventState, events: Sequence[SeatsReserved | ReservationRefused]) -> None:
    left = before.left_capacity
    for event in events:
        if isinstance(event, SeatsReserved):
            assert event.ticket_count <= left
            left -= event.ticket_count
        else:
            assert event.ticket_count > left
        assert event.left_capacity == left
        assert left >= 0


def check_answers(scenario: Scenario, decisions: Decisions) -> None:
    """Answers come in request order: a booking id already answered gets its first answer
    again (or a conflict when it asks for something else); an unknown event records nothing;
    every other request is the next event appended."""
    states = scenario.states
    first = {booking_id: (r, answer_of(r)) for booking_id, r in scenario.existing.items()}
    appended = iter(decisions.events)
    assert len(decisions.results) == len(scenario.items)
    for item, result in zip(scenario.items, decisions.results, strict=True):
        assert result.booking_id == item.booking_id
        if item.booking_id in first:
            reservation, answer = first[item.booking_id]
            asked = (item.event_id, item.ticket_count)
            repeat = asked == (reservation.event_id, reservation.ticket_count)
            conflict = ReservationItemResult(item.booking_id, ReservationOutcome.CONFLICT)
            assert result == (answer if repeat else conflict)
        elif item.event_id not in states:
            assert result == ReservationItemResult(
                item.booking_id, ReservationOutcome.EVENT_NOT_FOUND
            )
        else:
            _, event = next(appended)
            assert (event.event_id, event.booking_id, event.ticket_count) == (
                item.event_id,
                item.booking_id,
                item.ticket_count,
            )
            reservation = reservation_of(event)
            assert result == answer_of(reservation)
            first[item.booking_id] = (reservation, result)
    assert next(appended, None) is None
    assert decisions.new == [reservation_of(event) for _, event in decisions.events]


@given(scenarios())
def test_a_batch_never_oversells_and_its_events_fold_into_the_states_it_returns(
    scenario: Scenario,
) -> None:
    decisions = decide(scenario.items, scenario.existing, scenario.states)
    check_streams(scenario, decisions)
    check_answers(scenario, decisions)


@given(scenarios())
def test_deciding_a_batch_again_appends_nothing_and_answers_the_same(scenario: Scenario) -> None:
    first = decide(scenario.items, scenario.existing, scenario.states)
    recorded = {**scenario.existing, **{r.booking_id: r for r in first.new}}
    again = decide(scenario.items, recorded, {**scenario.states, **first.states})
    assert again.results == [replayed(answer, recorded) for answer in first.results]
    assert again.events == []
    assert again.new == []
    assert again.states == {}


def replayed(
    answer: ReservationItemResult, recorded: dict[uuid.UUID, Reservation]
) -> ReservationItemResult:
    """The one answer a replay changes: an unknown event's booking id that a later request of
    the same batch recorded is no longer unused, so asking again with it is a conflict."""
    if answer.outcome is ReservationOutcome.EVENT_NOT_FOUND and answer.booking_id in recorded:
        return ReservationItemResult(answer.booking_id, ReservationOutcome.CONFLICT)
    return answer


def test_a_batch_reserves_in_request_order_and_repeats_answer_the_first_time() -> None:
    event_id, unknown, first, second = (uuid.uuid4() for _ in range(4))
    states = {event_id: event_state([scheduled(event_id, 5)])}
    items = [
        ReservationItem(event_id, first, 3),
        ReservationItem(event_id, second, 3),
        ReservationItem(event_id, first, 3),
        ReservationItem(event_id, first, 2),
        ReservationItem(unknown, uuid.uuid4(), 1),
    ]
    decisions = decide(items, {}, states)
    assert [(r.outcome, r.left_capacity) for r in decisions.results] == [
        (ReservationOutcome.RESERVED, 2),
        (ReservationOutcome.INSUFFICIENT, 2),
        (ReservationOutcome.RESERVED, 2),
        (ReservationOutcome.CONFLICT, None),
        (ReservationOutcome.EVENT_NOT_FOUND, None),
    ]
    assert [version for version, _ in decisions.events] == [2, 3]
    assert decisions.states[event_id].left_capacity == 2


def test_an_unknown_event_leaves_the_booking_id_free_so_a_replay_finds_it_taken() -> None:
    event_id, unknown, booking_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    states = {event_id: event_state([scheduled(event_id, 5)])}
    items = [ReservationItem(unknown, booking_id, 1), ReservationItem(event_id, booking_id, 2)]
    decisions = decide(items, {}, states)
    assert [r.outcome for r in decisions.results] == [
        ReservationOutcome.EVENT_NOT_FOUND,
        ReservationOutcome.RESERVED,
    ]
    again = decide(items, {booking_id: decisions.new[0]}, decisions.states)
    assert [r.outcome for r in again.results] == [
        ReservationOutcome.CONFLICT,
        ReservationOutcome.RESERVED,
    ]


# --- evolve and fold


@given(st.integers(0, 100), st.integers(1, 100), st.integers(1, 1000))
def test_a_refusal_changes_only_the_version(left: int, count: int, version: int) -> None:
    event_id = uuid.uuid4()
    state = dataclasses.replace(
        event_state([scheduled(event_id, 100)]), left_capacity=left, version=version
    )
    refused = ReservationRefused(
        event_id=event_id, booking_id=uuid.uuid4(), ticket_count=count, left_capacity=left
    )
    assert evolve(state, refused) == dataclasses.replace(state, version=version + 1)


@given(st.integers(1, 100), st.integers(1, 100), st.integers(1, 1000))
def test_reserved_seats_are_subtracted_from_those_left(left: int, count: int, version: int) -> None:
    event_id = uuid.uuid4()
    state = dataclasses.replace(
        event_state([scheduled(event_id, 100)]), left_capacity=left, version=version
    )
    reserved = SeatsReserved(
        event_id=event_id, booking_id=uuid.uuid4(), ticket_count=count, left_capacity=left - count
    )
    assert evolve(state, reserved) == dataclasses.replace(
        state, left_capacity=left - count, version=version + 1
    )


def test_a_scheduled_event_starts_with_every_seat_left_at_version_one() -> None:
    venue = evolve(None, decide_register_venue(uuid.uuid4(), "Hall", "Main St 1", 300))
    assert isinstance(venue, VenueState)
    starts_at = datetime(2030, 5, 1, 20, tzinfo=UTC)
    event = decide_schedule_event(
        uuid.uuid4(),
        venue,
        name="Gig",
        total_capacity=200,
        ticket_price="12.5",
        starts_at=starts_at,
    )
    state = fold([event])
    assert state == EventState(
        event.event_id, venue.id, "Gig", 200, 200, Decimal("12.50"), starts_at, 1
    )
    assert venue == VenueState(venue.id, "Hall", "Main St 1", 300, 1)


def test_fold_of_no_events_is_no_state() -> None:
    assert fold([]) is None


def wrong_states() -> list[tuple[VenueState | EventState | None, InventoryEvent]]:
    event_id, venue_id, booking_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    venue = VenueState(venue_id, "Hall", "Main St 1", 10, 1)
    event = event_state([scheduled(event_id, 10)])
    registered = decide_register_venue(venue_id, "Hall", "Main St 1", 10)
    reserved = SeatsReserved(
        event_id=event_id, booking_id=booking_id, ticket_count=1, left_capacity=9
    )
    refused = ReservationRefused(
        event_id=event_id, booking_id=booking_id, ticket_count=11, left_capacity=10
    )
    return [
        (venue, registered),
        (event, registered),
        (event, scheduled(event_id, 10)),
        (venue, scheduled(event_id, 10)),
        (None, reserved),
        (venue, reserved),
        (None, refused),
        (venue, refused),
        (event_state([scheduled(uuid.uuid4(), 10)]), reserved),  # another event's stream
        (event_state([scheduled(uuid.uuid4(), 10)]), refused),
    ]


@pytest.mark.parametrize(("state", "event"), wrong_states())
def test_evolve_refuses_an_event_its_stream_cannot_be_at(
    state: VenueState | EventState | None, event: InventoryEvent
) -> None:
    with pytest.raises(ImpossibleHistory):
        evolve(state, event)


def test_evolve_refuses_what_is_not_an_inventory_event() -> None:
    with pytest.raises(TypeError, match="not an inventory event"):
        evolve(None, object())  # type: ignore[arg-type]


# --- scheduling


def hall(capacity: int) -> VenueState:
    state = evolve(None, decide_register_venue(uuid.uuid4(), "Hall", "Main St 1", capacity))
    assert isinstance(state, VenueState)
    return state


@pytest.mark.parametrize(("price", "stored"), [("49", "49.00"), ("49.5", "49.50"), ("0", "0.00")])
def test_a_scheduled_event_keeps_its_price_with_two_decimals(price: str, stored: str) -> None:
    venue = hall(100)
    event = decide_schedule_event(
        uuid.uuid4(), venue, name="Gig", total_capacity=100, ticket_price=price, starts_at=None
    )
    assert event.ticket_price == stored
    assert event.venue_id == venue.id
    assert event.total_capacity == 100


def test_an_event_cannot_hold_more_seats_than_its_venue() -> None:
    with pytest.raises(InvalidInput, match="exceeds the venue"):
        decide_schedule_event(
            uuid.uuid4(),
            hall(100),
            name="Gig",
            total_capacity=101,
            ticket_price="1",
            starts_at=None,
        )


@pytest.mark.parametrize("price", ["abc", "-1", "1.005", "NaN", "Infinity", "100000000"])
def test_an_event_cannot_be_scheduled_at_a_bad_price(price: str) -> None:
    with pytest.raises(InvalidInput, match="ticket_price"):
        decide_schedule_event(
            uuid.uuid4(),
            hall(100),
            name="Gig",
            total_capacity=10,
            ticket_price=price,
            starts_at=None,
        )
