"""A flash sale's buyers: each books one ticket, some hold and confirm, and during the cancel storm
bookings are cancelled by their buyers or by the support desk."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.careful import TAKING, Load, Plan, book_once, cancel, confirm, settled

SEATS, BUYERS, CANCELS = 100, 2000, 300
FIRST_WAVE = 1600  # the buyers during the cancel storm; the rest come once it is over
PACE = 200.0  # buyers arriving a second


@dataclass
class Storm:
    """The cancel storm: ``budget`` cancellations of accepted bookings during the first wave of
    buyers; ``over`` once each is answered and its booking settled (its seats back)."""

    budget: int
    sent: int = 0
    done: int = 0
    over: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> bool:
        if self.sent == self.budget:
            return False
        self.sent += 1
        return True

    def finish(self) -> None:
        self.done += 1
        if self.done == self.budget:
            self.over.set()


async def flash_buyer(
    own: list[httpx.AsyncClient],
    desk: list[httpx.AsyncClient],
    index: int,
    body: dict[str, Any],
    load: Load,
    *,
    storm: Storm | None,
) -> None:
    """One buyer: books one ticket (every other one a hold) and waits for the outcome; a held
    one in three is confirmed. During the storm, one in twenty cancels at once (PENDING), and
    winners are cancelled, by themselves or by the support desk (``desk``, an admin)."""
    hold = bool(body.get("hold"))
    booking_id = await book_once(own, index, body, load)
    if booking_id is None:
        return
    plan = Plan("flash", hold, "HELD" if hold else "CONFIRMED")
    load.plans[booking_id] = plan
    canceller = desk if index % 2 else own
    if storm is not None and index % 20 == 0 and storm.take():
        await cancel(canceller, index, booking_id, plan, load)
        await settled(own, index, booking_id, load)
        storm.finish()
        return
    status = await settled(own, index, booking_id, load)
    if status == "HELD" and index % 3 == 0:
        await confirm(own, index, booking_id, plan, load)
    if status in TAKING and storm is not None and storm.take():
        await cancel(canceller, index, booking_id, plan, load)
        await settled(own, index, booking_id, load)
        storm.finish()
