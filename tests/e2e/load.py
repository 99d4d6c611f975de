"""Booking load through the gateway: plain bookings, and a mixed load that walks bookings through
their lifecycle (ADR 17): holds confirmed, holds left to expire, cancellations of HELD, CONFIRMED
and PENDING bookings."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from tests.e2e.careful import TAKING, Load, Plan, book_once, cancel, confirm, settled

FULL = os.environ.get("TICKETING_CHAOS_SCALE") == "full"
HOLD_SECONDS = 3  # the fault scenarios' holds: those left alone expire mid-run


def scaled(short: float, full: float) -> float:
    """Durations of the short suite (every test run) and of ``make chaos``."""
    return full if FULL else short


@dataclass
class Sale:
    events: dict[str, int]  # event id -> capacity
    customers: list[str]


async def prepare_sale(
    api: httpx.AsyncClient, events_count: int, capacity: int, customers: int = 4
) -> Sale:
    venue = await api.post(
        "/api/v1/venues", json={"name": "Chaos", "address": "1 Fault Ln", "total_capacity": 10_000}
    )
    created: dict[str, int] = {}
    for index in range(events_count):
        event = await api.post(
            "/api/v1/events",
            json={
                "name": f"Chaos {index}",
                "venue_id": venue.json()["id"],
                "total_capacity": capacity,
                "ticket_price": "10.00",
            },
        )
        created[event.json()["id"]] = capacity

    async def customer() -> str:
        answer = await api.post(
            "/api/v1/customers",
            json={"name": "C", "email": f"c.{uuid.uuid4().hex[:12]}@example.com"},
        )
        assert answer.status_code == 201, answer.text
        customer_id: str = answer.json()["id"]
        return customer_id

    made: list[str] = []
    for start in range(0, customers, 100):
        made += await asyncio.gather(*(customer() for _ in range(min(100, customers - start))))
    return Sale(created, made)


# The mixed load's bookings, in turn: what each client does (kind), whether it holds the
# seats, and what it means the booking to end as.
MIX: tuple[tuple[str, bool, str], ...] = (
    ("plain", False, "CONFIRMED"),
    ("hold_confirm", True, "CONFIRMED"),
    ("hold_expire", True, "EXPIRED"),
    ("cancel_held", True, "CANCELLED"),
    ("cancel_confirmed", False, "CANCELLED"),
    ("cancel_pending", False, "CANCELLED"),
    ("cancel_pending_hold", True, "CANCELLED"),
    ("hold_confirm_cancel", True, "CANCELLED"),
)


async def lifecycle_once(
    apis: Sequence[httpx.AsyncClient], index: int, body: dict[str, Any], plan: Plan, load: Load
) -> None:
    """One booking of the mixed load, walked through its ``plan``."""
    booking_id = await book_once(apis, index, body, load)
    if booking_id is None:
        return
    load.plans[booking_id] = plan
    if plan.kind in ("cancel_pending", "cancel_pending_hold"):
        await cancel(apis, index, booking_id, plan, load)
    elif plan.kind in ("hold_confirm", "hold_confirm_cancel"):
        await confirm(apis, index, booking_id, plan, load)
        if plan.kind == "hold_confirm_cancel" and plan.confirm == 200:
            await cancel(apis, index, booking_id, plan, load)
    elif plan.kind in ("cancel_held", "cancel_confirmed") and (
        await settled(apis, index, booking_id, load) in TAKING
    ):
        await cancel(apis, index, booking_id, plan, load)


async def steady_load(
    apis: Sequence[httpx.AsyncClient],
    sale: Sale,
    *,
    rate: float,
    seconds: float,
    load: Load | None = None,
    mixed: bool = False,
) -> Load:
    """``rate`` booking requests a second for ``seconds``, each seen through to an answer, sent
    in turn through ``apis`` (one client per gateway replica); ``mixed``: each walked through
    the next plan of :data:`MIX` rather than left as a plain booking."""
    load = Load() if load is None else load
    event_ids = list(sale.events)
    tasks: list[asyncio.Task[Any]] = []
    for index in range(int(rate * seconds)):
        body: dict[str, Any] = {
            "customer_id": sale.customers[index % len(sale.customers)],
            "event_id": event_ids[index % len(event_ids)],
            "ticket_count": 1 + index % 3,
        }
        if mixed:
            kind, hold, meant = MIX[index % len(MIX)]
            if hold:
                body["hold"] = True
            walk = lifecycle_once(apis, index, body, Plan(kind, hold, meant), load)
            tasks.append(asyncio.create_task(walk))
        else:
            tasks.append(asyncio.create_task(book_once(apis, index, body, load)))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)
    return load
