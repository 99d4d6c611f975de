"""Booking reads events from inventory with its own client-credentials token, never with the
caller's: the read is shared among concurrent callers, so a caller's token there would make one
caller's bad or expiring token another caller's failure."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.harness.serving import Stack, answer_lifespan, bearer, serve
from tests.integration.flow import create_customer
from tests.integration.helpers import create_event
from ticketing.booking.app import create_app as create_booking_app


def azp_of(authorization: str) -> str:
    """The ``azp`` claim of a bearer token, read without checking it (inventory checks it)."""
    payload = authorization.removeprefix("Bearer ").split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return str(claims["azp"])


@dataclasses.dataclass
class Recorder:
    """An ASGI app in front of the real inventory that records who asked for what."""

    inventory_url: str
    seen: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append((scope["path"], headers.get("authorization", "")))
        async with httpx.AsyncClient(base_url=self.inventory_url) as client:
            answer = await client.get(
                scope["path"], headers={"authorization": headers.get("authorization", "")}
            )
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer.content})


@pytest.fixture
async def recorded_booking(stack: Stack) -> AsyncIterator[tuple[str, Recorder]]:
    recorder = Recorder(stack.settings.base_url("inventory"))
    async with serve(recorder) as recorder_url:  # type: ignore[arg-type]
        settings = dataclasses.replace(
            stack.settings, inventory_url=recorder_url, event_cache_seconds=0
        )
        async with serve(create_booking_app(settings, run_relay=False)) as url:
            yield url, recorder


async def test_booking_reads_the_event_with_its_own_token(
    stack: Stack, tokens: dict[str, str], recorded_booking: tuple[str, Recorder]
) -> None:
    url, recorder = recorded_booking
    event = await create_event(stack.inventory, capacity=10, price="25.00")
    async with httpx.AsyncClient(base_url=url, headers=bearer(tokens["client"])) as booking:
        customer = await create_customer(booking)
        response = await booking.post(
            "/api/v1/bookings",
            json={"customer_id": customer["id"], "event_id": event["id"], "ticket_count": 1},
        )
    assert response.status_code == 202, response.text
    reads = [authorization for path, authorization in recorder.seen if event["id"] in path]
    assert reads, recorder.seen
    assert {azp_of(authorization) for authorization in reads} == {"booking-service"}
