"""A careful client of the booking API: each booking has its own Idempotency-Key and every
request is retried on 5xx, 429, connection errors and a 409 with Retry-After (through the next
gateway replica, when there are several), so a crash never makes it book twice. Each booking's
plan and the answers its client had are kept for the consistency check."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

TAKING = frozenset({"HELD", "CONFIRMED"})  # a settled booking whose seats are taken
GIVEN_BACK = frozenset({"EXPIRED", "CANCELLED"})  # reserved once, released since
MOVING = ("PENDING", "CANCELLING")  # a saga still owes these bookings a step
BOOKINGS = "/api/v1/bookings"


@dataclass
class Plan:
    """What the client meant one booking of the mixed load to end as, and what it was told."""

    kind: str
    hold: bool
    meant: str
    confirm: int | None = None  # the confirm's answer: 200 or 409
    cancel: int | None = None  # the cancel's answer: 202 or 409
    cancelled_while: str | None = None  # the booking's status in the cancel's 202

    def allowed(self) -> frozenset[str]:
        """The statuses the booking may end in, given the answers its client had."""
        if self.cancel == 202:
            # A cancel while PENDING is applied once the saga answers; a rejection needs none.
            late = self.cancelled_while == "PENDING"
            return frozenset({"CANCELLED", "REJECTED"} if late else {"CANCELLED"})
        if self.cancel == 409 or self.confirm == 409:
            return frozenset({"EXPIRED", "REJECTED"})  # the hold ran out, or never got seats
        if self.confirm == 200:
            return frozenset({"CONFIRMED"})
        if self.hold:
            return frozenset({"HELD", "EXPIRED", "REJECTED"})
        return frozenset({"CONFIRMED", "REJECTED"})


@dataclass
class Load:
    accepted: dict[str, str] = field(default_factory=dict)  # booking id -> event id
    refused: Counter[int] = field(default_factory=Counter)
    gave_up: int = 0
    retries: int = 0  # after a failure: no answer, 5xx or 429
    waits: int = 0  # after a 409 with Retry-After: the booking or its key was still busy
    plans: dict[str, Plan] = field(default_factory=dict)  # the mixed load's, by booking id
    unexpected: list[str] = field(default_factory=list)  # answers a careful client cannot take
    unanswered: list[str] = field(default_factory=list)  # the requests given up on


def worth_retrying(response: httpx.Response | None) -> bool:
    return (
        response is None
        or response.status_code >= 500
        or response.status_code == 429
        or "retry-after" in response.headers
    )


async def careful(
    apis: Sequence[httpx.AsyncClient],
    first: int,
    load: Load,
    method: str,
    path: str,
    **kwargs: Any,
) -> httpx.Response | None:
    """``method path`` until it has an answer not worth retrying, each attempt through the next
    of ``apis``; None (counted as given up) when none came within two minutes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    response: httpx.Response | None = None
    for attempt in itertools.count(first):
        if loop.time() >= deadline:
            break
        try:
            response = await apis[attempt % len(apis)].request(method, path, **kwargs)
        except httpx.HTTPError:
            response = None
        if not worth_retrying(response):
            return response
        if response is not None and response.status_code == 409:
            load.waits += 1
        else:
            load.retries += 1
        told = response.headers.get("retry-after", "") if response is not None else ""
        await asyncio.sleep(min(float(told), 1.0) if told.isdigit() else 0.3)
    load.gave_up += 1
    last = "no answer" if response is None else f"{response.status_code} {response.text[:200]}"
    load.unanswered.append(f"{method} {path}, last: {last}")
    return None


async def book_once(
    apis: Sequence[httpx.AsyncClient], first: int, body: dict[str, Any], load: Load
) -> str | None:
    """Request a booking; its id once accepted (None: refused, or no answer)."""
    key = str(uuid.uuid4())
    response = await careful(
        apis, first, load, "POST", BOOKINGS, json=body, headers={"Idempotency-Key": key}
    )
    if response is None:
        return None
    if response.status_code == 202:
        booking_id: str = response.json()["id"]
        load.accepted[booking_id] = body["event_id"]
        return booking_id
    load.refused[response.status_code] += 1
    return None


async def settled(
    apis: Sequence[httpx.AsyncClient], first: int, booking_id: str, load: Load
) -> str | None:
    """The booking's status once it is neither PENDING nor CANCELLING, by long-polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while loop.time() < deadline:
        response = await careful(
            apis, first, load, "GET", f"{BOOKINGS}/{booking_id}", params={"wait": 5}, timeout=20
        )
        if response is None:
            return None
        if response.status_code != 200:
            load.unexpected.append(f"GET {booking_id}: {response.status_code} {response.text}")
            return None
        status: str = response.json()["status"]
        if status not in MOVING:
            return status
    load.gave_up += 1
    load.unanswered.append(f"GET {booking_id}: still PENDING or CANCELLING")
    return None


async def confirm(
    apis: Sequence[httpx.AsyncClient], first: int, booking_id: str, plan: Plan, load: Load
) -> None:
    response = await careful(apis, first, load, "POST", f"{BOOKINGS}/{booking_id}/confirm")
    if response is None:
        return
    if response.status_code in (200, 409):
        plan.confirm = response.status_code
    else:
        load.unexpected.append(f"confirm {booking_id}: {response.status_code} {response.text}")


async def cancel(
    apis: Sequence[httpx.AsyncClient], first: int, booking_id: str, plan: Plan, load: Load
) -> None:
    response = await careful(apis, first, load, "POST", f"{BOOKINGS}/{booking_id}/cancel")
    if response is None:
        return
    if response.status_code == 202:
        plan.cancel, plan.cancelled_while = 202, response.json()["status"]
    elif response.status_code == 409:
        plan.cancel = 409
    else:
        load.unexpected.append(f"cancel {booking_id}: {response.status_code} {response.text}")
