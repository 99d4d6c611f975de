"""Every answer through the gateway belongs to its own request, whatever the requests around it
carry: ``Expect: 100-continue``, ``Connection: close``, HEAD, chunked bodies, upstream errors and
slowly streamed bodies, sent concurrently over pooled connections.

The upstream is a small ASGI app under the real uvicorn that echoes which request it answered, so
an answer delivered to the wrong caller is visible at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.serving import answer_lifespan, bearer, serve
from ticketing.gateway.app import create_app as create_gateway_app
from ticketing.shared.settings import Settings

MODES = ("plain", "expect", "close", "head", "chunked", "error", "slow")
SLOW_CHUNK_SECONDS = 0.01


async def read_request_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def echo_upstream(scope: Any, receive: Any, send: Any) -> None:
    """Answers ``/api/v1/customers/<id>?mode=...`` with the id it was asked for, in a header and
    in the body, and the header names it received."""
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    body = await read_request_body(receive)  # uvicorn sends 100 Continue here when asked
    await asyncio.sleep(0.002)  # work, as a real service does: the 100 goes out on its own
    request_id = scope["path"].rsplit("/", 1)[-1]
    mode = parse_qs(scope["query_string"].decode()).get("mode", ["plain"])[0]
    answer = json.dumps(
        {
            "id": request_id,
            "method": scope["method"],
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "headers": sorted({name.decode() for name, _ in scope["headers"]}),
        }
    ).encode()
    status = 500 if mode == "error" else 200
    headers = [(b"content-type", b"application/json"), (b"x-echo-id", request_id.encode())]
    if mode == "forever":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        disconnected = asyncio.ensure_future(receive())  # http.disconnect once the caller left
        for _ in range(600):
            if disconnected.done():
                return
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await asyncio.sleep(0.05)
        disconnected.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if mode != "slow":
        headers.append((b"content-length", str(len(answer)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if mode == "slow":
        for start in range(0, len(answer), 16):
            await send(
                {
                    "type": "http.response.body",
                    "body": answer[start : start + 16],
                    "more_body": True,
                }
            )
            await asyncio.sleep(SLOW_CHUNK_SECONDS)
        answer = b""
    await send({"type": "http.response.body", "body": answer, "more_body": False})


@pytest.fixture(scope="module")
async def echo_gateway(base_settings: Settings) -> AsyncIterator[str]:
    """A gateway whose upstreams are the echo app; its breakers never open and its rate limit
    never refuses, so that every answer comes from the upstream."""
    async with serve(echo_upstream) as upstream_url:  # type: ignore[arg-type]
        settings = dataclasses.replace(
            base_settings,
            booking_url=upstream_url,
            inventory_url=upstream_url,
            upstream_timeout=1.0,
            breaker_min_calls=1_000_000,
            gateway_rate_limit_per_second=1_000_000.0,
            gateway_rate_limit_burst=1_000_000,
        )
        async with serve(create_gateway_app(settings)) as url:
            yield url


@dataclasses.dataclass(frozen=True)
class Exchange:
    mode: str
    request_id: str
    body: bytes


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 7):
        yield body[start : start + 7]
        await asyncio.sleep(0)


async def exchange(client: httpx.AsyncClient, mode: str) -> tuple[Exchange, httpx.Response]:
    request_id = uuid.uuid4().hex
    url = f"/api/v1/customers/{request_id}?mode={mode}"
    body = json.dumps({"request": request_id, "pad": "x" * 200}).encode()
    headers = {"content-type": "application/json"}
    if mode == "expect":
        response = await client.post(
            url, content=body, headers={**headers, "expect": "100-continue"}
        )
    elif mode == "chunked":
        response = await client.post(url, content=chunks(body), headers=headers)
    elif mode == "head":
        body = b""
        response = await client.head(url)
    elif mode == "close":
        body = b""
        response = await client.get(url, headers={"connection": "close"})
    else:
        body = b""
        response = await client.get(url)
    return Exchange(mode, request_id, body), response


def check(sent: Exchange, response: httpx.Response) -> None:
    """The answer is the upstream's answer to this very request."""
    assert response.headers.get("x-echo-id") == sent.request_id, (sent, response.status_code)
    assert response.status_code == (500 if sent.mode == "error" else 200), sent
    if sent.mode == "head":
        assert response.content == b""
        return
    echoed = response.json()
    assert echoed["id"] == sent.request_id
    assert echoed["body_sha256"] == hashlib.sha256(sent.body).hexdigest(), sent
    forwarded = set(echoed["headers"])
    assert not forwarded & {"expect", "connection", "transfer-encoding", "keep-alive", "te"}, sent


async def run_interleaved(url: str, token: str, plan: list[list[str]]) -> None:
    """Each inner list runs concurrently on a few shared client pools; the lists run in turn."""
    clients = [httpx.AsyncClient(base_url=url, headers=bearer(token), timeout=10) for _ in range(3)]
    try:
        for round_ in plan:
            results = await asyncio.gather(
                *(exchange(clients[i % len(clients)], mode) for i, mode in enumerate(round_))
            )
            for sent, response in results:
                check(sent, response)
    finally:
        for client in clients:
            await client.aclose()


async def test_interleaved_requests_each_get_their_own_answer(
    echo_gateway: str, tokens: dict[str, str]
) -> None:
    # The defect this guards against: an Expect: 100-continue request left its real answer
    # unread on a pooled upstream connection, and the next request on it received that answer.
    plan = [[*MODES, *MODES] for _ in range(8)]
    plan += [["expect", "plain", "plain", "plain"] for _ in range(10)]
    await run_interleaved(echo_gateway, tokens["client"], plan)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=st.lists(st.lists(st.sampled_from(MODES), min_size=1, max_size=12), min_size=1, max_size=6)
)
async def test_generated_interleavings_each_get_their_own_answer(
    echo_gateway: str, tokens: dict[str, str], plan: list[list[str]]
) -> None:
    await run_interleaved(echo_gateway, tokens["client"], plan)


async def test_a_streamed_answer_is_cut_at_the_upstream_timeout(
    echo_gateway: str, tokens: dict[str, str]
) -> None:
    """An upstream that never finishes its body cannot hold a gateway connection for ever."""
    async with httpx.AsyncClient(base_url=echo_gateway, headers=bearer(tokens["client"])) as client:
        with pytest.raises(httpx.RemoteProtocolError):  # noqa: PT012 - the read is what fails
            async with asyncio.timeout(10):  # the upstream would stream for 30 s
                async with client.stream(
                    "GET", f"/api/v1/customers/{uuid.uuid4().hex}?mode=forever"
                ) as response:
                    assert response.status_code == 200
                    async for _ in response.aiter_bytes():
                        pass


async def test_header_bytes_outside_ascii_are_a_clear_400(
    echo_gateway: str, tokens: dict[str, str]
) -> None:
    """aiohttp would send them re-encoded: refused rather than delivered changed."""
    async with httpx.AsyncClient(base_url=echo_gateway, headers=bearer(tokens["client"])) as client:
        header = await client.get(
            f"/api/v1/customers/{uuid.uuid4().hex}", headers={b"x-name": "caf\u00e9".encode()}
        )
        assert header.status_code == 400
        assert header.headers["content-type"] == "application/problem+json"
        assert header.headers.get("x-echo-id") is None  # never reached the upstream
