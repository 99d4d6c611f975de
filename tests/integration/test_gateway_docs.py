"""The gateway's documentation: the merged OpenAPI of every public operation (picking up a
service that starts later), the AsyncAPI event docs, and both pages rendered in a real browser."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, post

from tests.harness.processes import free_port
from tests.harness.serving import Gateway, Stack, gateway_settings, serve
from ticketing.gateway.app import create_app as create_gateway_app


async def test_merged_openapi_lists_every_public_operation(gateway: Gateway) -> None:
    async with gateway.client(None) as anonymous:
        spec = (await anonymous.get("/docs/openapi.json")).json()
    paths = set(spec["paths"])
    assert {
        "/api/v1/venues",
        "/api/v1/events",
        "/api/v1/events/{event_id}",
        "/api/v1/customers",
        "/api/v1/bookings",
        "/api/v1/bookings/{booking_id}",
    } <= paths
    assert not any(path.startswith(("/internal", "/health", "/metrics")) for path in paths)
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    token_url = schemes["oauth2"]["flows"]["clientCredentials"]["tokenUrl"]
    assert token_url.endswith("/realms/ticketing/protocol/openid-connect/token")
    refs = {ref for ref in json.dumps(spec).split('"$ref": "')[1:] for ref in [ref.split('"')[0]]}
    for ref in refs:
        assert ref.removeprefix("#/components/schemas/") in spec["components"]["schemas"], ref


async def test_the_merged_document_picks_up_a_service_that_starts_later(
    stack: Stack,
) -> None:
    port = free_port()
    settings = gateway_settings(stack, booking_url=f"http://127.0.0.1:{port}")

    @post("/api/v1/bookings")
    async def late_booking(request: Request[Any, Any, Any]) -> dict[str, str]:
        return {}

    async with (
        serve(create_gateway_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        before = (await client.get("/docs/openapi.json")).json()
        assert "/api/v1/bookings" not in before["paths"]
        assert before["x-upstreams"] == {"inventory": True, "booking": False}
        async with serve(Litestar([late_booking]), port=port):
            await asyncio.sleep(2.1)  # the gateway asks missing upstreams again every 2 s
            after = (await client.get("/docs/openapi.json")).json()
        assert "/api/v1/bookings" in after["paths"]
        assert after["x-upstreams"] == {"inventory": True, "booking": True}


async def test_event_docs_are_served(gateway: Gateway) -> None:
    async with gateway.client(None) as anonymous:
        document = (await anonymous.get("/docs/asyncapi.json")).json()
        assert document["asyncapi"] == "3.0.0"
        page = await anonymous.get("/docs/events")
        assert page.status_code == 200
        assert 'charset="utf-8"' in page.text
        script = await anonymous.get("/docs/assets/asyncapi/browser/standalone/index.js")
        assert script.status_code == 200
        assert "AsyncApiStandalone" in script.text[:2000]
        swagger = await anonymous.get("/docs/assets/swagger-ui/swagger-ui-bundle.js")
        assert swagger.status_code == 200


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (
            "/docs",
            [
                "/api/v1/venues",
                "/api/v1/events/{event_id}",
                "/api/v1/bookings",
                "/api/v1/customers",
            ],
        ),
        ("/docs/events", ["ticketing.bookings", "ticketing.orders", "BookingRequested"]),
    ],
)
async def test_docs_render_in_a_real_browser(
    gateway: Gateway, page: str, expected: list[str]
) -> None:
    from tests.harness.serving import render_in_chromium

    dom = await render_in_chromium(gateway.url + page)
    for text in expected:
        assert text in dom, f"{text} not rendered on {page}"
