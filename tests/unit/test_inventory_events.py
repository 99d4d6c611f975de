"""Inventory's decider: ``decide`` turns a batch of reservation requests into events,
``evolve``/``fold`` turn events into states, and the two must agree.

The property tests start from event states folded from a generated history (scheduled, then
some reservations), so the reservations already recorded in ``existing`` are the ones the
history holds, and a batch mixes repeats, reused booking ids and unknown events.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.inventory_streams import event_state, reserve, scheduled
from ticketing.contracts.inventory import (
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
)
from ticketing.inventory.decisions import Decisions, decide
from ticketing.inventory.domain import (
    EventState,
    EventStreamEvent,
    ReservationRefused,
    SeatsReserved,
)
from ticketing.inventory.reservation import Reservation, reservation_of

MAX_CAPACITY = 8


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
