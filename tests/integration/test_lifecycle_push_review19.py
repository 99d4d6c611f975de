"""Review of issue 19: the status push tells every step of the lifecycle. A customer's stream
sends HELD, CANCELLING, CANCELLED and EXPIRED (with expires_at on HELD); a long-poll begun
while a booking is CANCELLING answers once it is CANCELLED; one begun on a HELD booking
answers at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.harness import Stack
from tests.integration.test_status_push import events_of, sale


async def _book(stack: Stack, customer_id: str, event_id: str, *, hold: bool) -> str:
    accepted = await stack.booking.post(
        "/api/v1/bookings",
        json={"customer_id": customer_id, "event_id": event_id, "ticket_count": 1, "hold": hold},
    )
    assert accepted.status_code == 202, accepted.text
    booking_id: str = accepted.json()["id"]
    return booking_id


async def test_a_stream_sends_every_step_of_the_lifecycle(stack: Stack) -> None:
    customer_id, event_id = await sale(stack)
    path = f"/api/v1/customers/{customer_id}/bookings/stream"
    seen: dict[str, list[dict[str, Any]]] = {}
    async with stack.booking.stream("GET", path) as response:
        assert response.status_code == 200
        cancelled = await _book(stack, customer_id, event_id, hold=True)
        left = await _book(stack, customer_id, event_id, hold=True)  # expires (4 s)
        pending_cancel = await _book(stack, customer_id, event_id, hold=False)
        early = await stack.booking.post(f"/api/v1/bookings/{pending_cancel}/cancel")
        assert early.status_code == 202, early.text
        waited = await stack.booking.get(f"/api/v1/bookings/{cancelled}", params={"wait": 20})
        assert waited.json()["status"] == "HELD"
        held_at_once = await stack.booking.get(
            f"/api/v1/bookings/{cancelled}", params={"wait": 20}, timeout=5
        )
        assert held_at_once.json()["status"] == "HELD"  # not transient: answered at once
        answer = await stack.booking.post(f"/api/v1/bookings/{cancelled}/cancel")
        assert answer.status_code == 202
        if answer.json()["status"] == "CANCELLING":
            done = await stack.booking.get(f"/api/v1/bookings/{cancelled}", params={"wait": 20})
            assert done.json()["status"] == "CANCELLED"

        async def read() -> None:
            async for event in events_of(response):
                change = json.loads(event["data"])
                seen.setdefault(change["booking_id"], []).append(change)
                statuses = {b: [c["status"] for c in cs] for b, cs in seen.items()}
                if (
                    statuses.get(cancelled, [])[-1:] == ["CANCELLED"]
                    and statuses.get(left, [])[-1:] == ["EXPIRED"]
                    and statuses.get(pending_cancel, [])[-1:] == ["CANCELLED"]
                ):
                    return

        await asyncio.wait_for(read(), 30)
    steps = {b: [c["status"] for c in changes] for b, changes in seen.items()}
    assert steps[cancelled] == ["PENDING", "HELD", "CANCELLING", "CANCELLED"]
    assert steps[left] == ["PENDING", "HELD", "EXPIRED"]
    assert steps[pending_cancel] in (
        ["PENDING", "PENDING", "CONFIRMED", "CANCELLING", "CANCELLED"],  # cancel before the saga
        ["PENDING", "CONFIRMED", "CANCELLING", "CANCELLED"],  # after it
    )
    held = next(c for c in seen[left] if c["status"] == "HELD")
    assert held["expires_at"] is not None
    assert held["order_id"] is not None
