"""Which requests the gateway lets run long, and how a caller's leaving ends them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ticketing.contracts.booking import MAX_WAIT_SECONDS
from ticketing.gateway.routing import LongRequest, long_request
from ticketing.shared.http.disconnect import until_caller_leaves

WAIT = "/api/v1/bookings/*?wait"
STREAM = "/api/v1/customers/*/bookings/stream"


def recognised(method: str, path: str, query: str = "") -> LongRequest | None:
    return long_request(method, path, query, timeout=3.0, heartbeat=15.0)


@pytest.mark.parametrize(
    ("query", "total"),
    [
        ("wait=5", 8.0),
        ("wait=0.5", 3.5),
        ("wait=30", 33.0),
        ("wait=31", MAX_WAIT_SECONDS + 3.0),
        ("wait=1e9", MAX_WAIT_SECONDS + 3.0),
        ("other=1&wait=2", 5.0),
        ("wait=2&wait=7", 10.0),  # booking reads one of them: the timeout covers either
        ("wait=abc&wait=4", 7.0),
    ],
)
def test_a_long_poll_may_take_its_wait_on_top_of_the_usual_timeout(
    query: str, total: float
) -> None:
    assert recognised("GET", "/api/v1/bookings/0190a1b2", query) == LongRequest(
        total=total, read=None, stream=False, template=WAIT
    )


@pytest.mark.parametrize(
    "query", ["", "wait=", "wait=abc", "wait=-5", "wait=0", "wait=nan", "wait=inf", "waiting=5"]
)
def test_a_wait_that_is_no_number_above_0_keeps_the_usual_timeout(query: str) -> None:
    # Booking refuses such a wait itself (400), in the usual time.
    assert recognised("GET", "/api/v1/bookings/0190a1b2", query) is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/bookings/0190a1b2"),
        ("HEAD", "/api/v1/bookings/0190a1b2"),
        ("GET", "/api/v1/bookings"),
        ("GET", "/api/v1/bookings/"),
        ("GET", "/api/v1/bookings/0190a1b2/more"),
        ("GET", "/api/v1/customers/0190a1b2"),
        ("GET", "/api/v1/events/0190a1b2"),
    ],
)
def test_only_a_get_of_one_booking_is_a_long_poll(method: str, path: str) -> None:
    assert recognised(method, path, "wait=5") is None


def test_a_booking_stream_has_no_total_limit_but_may_miss_three_heartbeats() -> None:
    stream = recognised("GET", "/api/v1/customers/0190a1b2/bookings/stream")
    assert stream == LongRequest(total=None, read=45.0, stream=True, template=STREAM)
    assert recognised("GET", "/api/v1/customers/c/bookings/stream", "wait=5") == stream


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/bookings/0190a1b2/",
        "/api/v1/bookings//0190a1b2",
        "/api/v1/customers/c/bookings/stream/",
        "/api/v1/customers//c//bookings//stream",
    ],
)
def test_slashes_booking_ignores_do_not_hide_a_long_request(path: str) -> None:
    # Booking's router reaches the same handler: the timeout must be the same too.
    assert recognised("GET", path, "wait=5") is not None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/customers/c/bookings/stream"),
        ("GET", "/api/v1/customers/c/bookings"),
        ("GET", "/api/v1/customers//bookings/stream"),
        ("GET", "/api/v1/customers/c/bookings/stream/x"),
        ("GET", "/api/v1/customers/c/d/bookings/stream"),
        ("GET", "/api/v1/events/c/bookings/stream"),
    ],
)
def test_nothing_else_is_a_stream(method: str, path: str) -> None:
    assert recognised(method, path) is None


class Channel:
    """An ASGI ``receive`` whose messages the test hands over."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def __call__(self) -> Any:
        return await self.messages.get()


async def test_a_caller_leaving_ends_the_block_quietly_and_at_once() -> None:
    channel = Channel()
    channel.messages.put_nowait({"type": "http.request", "body": b"", "more_body": False})
    reached_end = False
    async with until_caller_leaves(channel) as caller:
        channel.messages.put_nowait({"type": "http.disconnect"})
        await asyncio.sleep(30)
        reached_end = True
    assert caller.left
    assert not reached_end
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # nothing of the cancellation is left behind
    await asyncio.sleep(0)  # and nothing is delivered later


async def test_a_block_that_ends_first_leaves_nothing_behind() -> None:
    channel = Channel()
    async with until_caller_leaves(channel) as caller:
        await asyncio.sleep(0.01)
    assert not caller.left
    channel.messages.put_nowait({"type": "http.disconnect"})
    await asyncio.sleep(0.01)  # the watch is gone: it cancels nothing any more


async def test_a_cancellation_from_elsewhere_still_cancels() -> None:
    channel = Channel()

    async def request() -> None:
        async with until_caller_leaves(channel):
            await asyncio.sleep(30)

    task = asyncio.create_task(request())
    await asyncio.sleep(0.01)
    task.cancel()  # a server stopping
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("leaves_first", [True, False])
async def test_a_cancellation_from_elsewhere_wins_even_as_the_caller_leaves(
    leaves_first: bool,
) -> None:
    channel = Channel()

    async def request() -> None:
        async with until_caller_leaves(channel):
            await asyncio.sleep(30)

    task = asyncio.create_task(request())
    await asyncio.sleep(0.01)
    if leaves_first:
        channel.messages.put_nowait({"type": "http.disconnect"})
        task.cancel()  # the watch runs first: two cancellations arrive together
    else:
        task.cancel()
        channel.messages.put_nowait({"type": "http.disconnect"})
    with pytest.raises(asyncio.CancelledError):
        await task
