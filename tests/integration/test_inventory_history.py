"""An event's history and its state at a past time, through the real inventory app."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.harness.processes import DEV_CLIENTS
from tests.harness.serving import bearer
from tests.integration.helpers import create_event, create_venue

PROBLEM = "application/problem+json"
ADMIN_CLIENT = DEV_CLIENTS["admin"][0]
ORDER_CLIENT = DEV_CLIENTS["order"][0]


async def reserve(
    inventory: httpx.AsyncClient,
    tokens: dict[str, str],
    event_id: str,
    count: int,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Reserve as the order service does: with its own token, on the internal path."""
    response = await inventory.post(
        f"/internal/v1/events/{event_id}/reservations",
        json={"booking_id": str(uuid.uuid4()), "ticket_count": count},
        headers={**bearer(tokens["order"]), **(headers or {})},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def whole_history(client: httpx.AsyncClient, event_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/events/{event_id}/history", params={"limit": 100})
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_history_shows_the_scheduling_then_each_reservation_with_who_caused_it(
    inventory: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    event = await create_event(inventory, capacity=5)
    traced = {"X-Request-ID": "corr-1", "X-Causation-ID": "msg-1"}
    reserved = await reserve(inventory, tokens, event["id"], 3, traced)
    refused = await reserve(inventory, tokens, event["id"], 4)
    assert (reserved["status"], refused["status"]) == ("reserved", "insufficient")

    history = await whole_history(inventory, event["id"])

    assert [(e["version"], e["type"], e["actor"]) for e in history] == [
        (1, "EventScheduled", ADMIN_CLIENT),
        (2, "SeatsReserved", ORDER_CLIENT),
        (3, "ReservationRefused", ORDER_CLIENT),
    ]
    scheduled, seats, refusal = history
    assert scheduled["data"] == {
        "event_id": event["id"],
        "venue_id": event["venue"]["id"],
        "name": event["name"],
        "total_capacity": 5,
        "ticket_price": "49.00",
        "starts_at": None,
        "max_tickets_per_customer": None,
    }
    assert seats["data"] == {
        "event_id": event["id"],
        "booking_id": reserved["booking_id"],
        "ticket_count": 3,
        "left_capacity": 2,
        "customer_id": None,  # the single reservation names no customer
    }
    assert refusal["data"]["ticket_count"] == 4
    assert refusal["data"]["left_capacity"] == 2
    assert refusal["data"]["reason"] == "insufficient"
    assert (seats["correlation_id"], seats["causation_id"]) == ("corr-1", "msg-1")
    times = [moment(e["recorded_at"]) for e in history]
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert times == sorted(times)


async def test_history_pages_cover_every_event_exactly_once(
    inventory: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    event = await create_event(inventory, capacity=20)
    for _ in range(7):  # six are reserved, the seventh refused: eight events in all
        await reserve(inventory, tokens, event["id"], 3)

    versions: list[int] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        response = await inventory.get(f"/api/v1/events/{event['id']}/history", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert 1 <= len(page["items"]) <= 3
        versions += [item["version"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert versions == list(range(1, 9))
    assert pages == 3
    assert [e["version"] for e in await whole_history(inventory, event["id"])] == versions


async def test_as_of_answers_the_event_as_it_was_at_that_time(
    inventory: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    venue = await create_venue(inventory, capacity=10)
    created = await inventory.post(
        "/api/v1/events",
        json={
            "name": "Matinee",
            "venue_id": venue["id"],
            "total_capacity": 10,
            "ticket_price": "12.5",
            "starts_at": "2027-05-01T15:00:00+02:00",
        },
    )
    assert created.status_code == 201, created.text
    event = created.json()
    await reserve(inventory, tokens, event["id"], 3)
    await reserve(inventory, tokens, event["id"], 2)
    now = (await inventory.get(f"/api/v1/events/{event['id']}")).json()
    assert now["left_capacity"] == 5
    scheduled, first, second = (
        moment(e["recorded_at"]) for e in await whole_history(inventory, event["id"])
    )
    assert scheduled < first < second

    async def as_of(when: datetime) -> httpx.Response:
        return await inventory.get(
            f"/api/v1/events/{event['id']}", params={"as_of": when.isoformat()}
        )

    assert (await as_of(scheduled)).json() == {**now, "left_capacity": 10}
    between = first + (second - first) / 2
    assert (await as_of(between)).json() == {**now, "left_capacity": 7}
    # The same instant written with another offset is the same time.
    elsewhere = (await as_of(between.astimezone(timezone(timedelta(hours=-7))))).json()
    assert elsewhere["left_capacity"] == 7
    assert (await as_of(second)).json() == now
    assert (await as_of(second + timedelta(days=365))).json() == now

    before = await as_of(scheduled - timedelta(microseconds=1))
    assert before.status_code == 404
    assert before.headers["content-type"] == PROBLEM
    assert "did not exist" in before.json()["detail"]


async def test_unknown_events_and_other_streams_have_no_history_or_past(
    inventory: httpx.AsyncClient,
) -> None:
    venue = await create_venue(inventory)  # a venue's id names a stream too, not an event's
    for unknown in (str(uuid.uuid4()), venue["id"]):
        history = await inventory.get(f"/api/v1/events/{unknown}/history")
        past = await inventory.get(
            f"/api/v1/events/{unknown}", params={"as_of": "2100-01-01T00:00:00Z"}
        )
        for response in (history, past):
            assert response.status_code == 404, response.text
            assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("history", {"limit": 0}, "limit"),
        ("history", {"limit": 101}, "limit"),
        ("history", {"limit": "many"}, "limit"),
        ("history", {"cursor": "@@@"}, "cursor"),
        ("history", {"cursor": "AAAAAAAAAAAAAAAAAAAAAA"}, "cursor"),  # an events-list cursor
        ("event", {"as_of": "2027-01-01T20:00:00"}, "as_of"),  # no offset
        ("event", {"as_of": "yesterday"}, "as_of"),
        ("event", {"as_of": "1700000000"}, "as_of"),
        ("event", {"as_of": "2027-01-01"}, "as_of"),
        ("event", {"as_of": "0001-01-01T00:00:00+01:00"}, "as_of"),  # before year 1 in UTC
        ("event", {"as_of": "9999-12-31T23:59:59-01:00"}, "as_of"),  # after 9999 in UTC
    ],
)
async def test_bad_cursors_limits_and_times_are_400_problems(
    inventory: httpx.AsyncClient, path: str, params: dict[str, Any], field: str
) -> None:
    event = await create_event(inventory, capacity=1)
    url = f"/api/v1/events/{event['id']}" + ("/history" if path == "history" else "")
    response = await inventory.get(url, params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert field in body["detail"]
    assert [error["field"] for error in body["errors"]] == [field]


async def test_any_valid_token_reads_the_past_and_none_does_not(
    inventory: httpx.AsyncClient, inventory_url: str, tokens: dict[str, str]
) -> None:
    event = await create_event(inventory, capacity=1)
    paths = [f"/api/v1/events/{event['id']}/history", f"/api/v1/events/{event['id']}"]
    params = [{}, {"as_of": "2100-01-01T00:00:00Z"}]
    async with httpx.AsyncClient(base_url=inventory_url, timeout=30) as anonymous:
        for path, query in zip(paths, params, strict=True):
            assert (await anonymous.get(path, params=query)).status_code == 401
            as_client = await anonymous.get(path, params=query, headers=bearer(tokens["client"]))
            assert as_client.status_code == 200, as_client.text


async def test_openapi_documents_history_and_as_of(inventory: httpx.AsyncClient) -> None:
    spec = (await inventory.get("/schema/openapi.json")).json()
    history = spec["paths"]["/api/v1/events/{event_id}/history"]["get"]
    assert {p["name"] for p in history["parameters"]} >= {"event_id", "limit", "cursor"}
    get_event = spec["paths"]["/api/v1/events/{event_id}"]["get"]
    (as_of,) = (p for p in get_event["parameters"] if p["name"] == "as_of")
    assert as_of["schema"]["format"] == "date-time"
    assert "HistoryEntry" in spec["components"]["schemas"]
