"""The status feed's readers: a stream tells the store's position first and beats when idle, holds
its client's slot while it lasts, and a reader that falls too far behind is cut off once, freeing
its slot and its subscription, even while its socket is stalled or its next change arrives."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from typing import Any

import pytest
from litestar.response.streaming import ASGIStreamingResponse

from tests.fakes.status_log import InMemoryStatusLog, recorded
from tests.unit.status_events import CUSTOMER, confirmed, feed_on, requested
from ticketing.booking.push import StatusPush
from ticketing.booking.status_feed import StatusFeed
from ticketing.booking.status_listeners import OpenLimit
from ticketing.shared.errors import RateLimited


def push_on(feed: StatusFeed, *, heartbeat: float = 30, buffer: int = 100) -> StatusPush:
    return StatusPush(feed, OpenLimit(1), heartbeat, buffer)


async def test_a_reader_too_far_behind_is_cut_off_once() -> None:
    log = InMemoryStatusLog()
    feed = feed_on(log)
    await feed.start()
    cut_offs: list[None] = []
    async with feed.subscribed(CUSTOMER, 2, on_overflow=lambda: cut_offs.append(None)) as (
        live,
        _,
    ):
        for position in range(1, 6):
            b = uuid.uuid4()
            log.commit(recorded(position, requested(b), stream_id=b, version=1))
        await feed.poll()
        assert live.overflowed
        assert live.changes.qsize() == 2  # bounded: nothing more was kept for it
    assert cut_offs == [None]
    assert not feed._subscriptions


async def test_a_stream_tells_the_store_first_then_what_happens_and_beats_when_idle() -> None:
    log = InMemoryStatusLog()
    b = uuid.uuid4()
    log.commit(
        recorded(1, requested(b), stream_id=b, version=1),
        recorded(2, confirmed(b), stream_id=b, version=2),
    )
    feed = feed_on(log)
    await feed.poll()  # the mark is at 2
    stream = push_on(feed, heartbeat=0.05).stream(CUSTOMER, "client", after=0)
    assert await anext(stream) == b"retry: 1000\n\n"
    told = [await anext(stream), await anext(stream)]
    assert [chunk.split(b"\n")[0] for chunk in told] == [b"id: 1", b"id: 2"]
    assert b'"status":"CONFIRMED"' in told[1]
    assert await anext(stream) == b": keep-alive\n\n"
    other = uuid.uuid4()
    log.commit(recorded(3, requested(other), stream_id=other, version=1))
    await feed.poll()
    live = await anext(stream)
    assert live.startswith(b"id: 3\nevent: booking\ndata: ")
    await stream.aclose()
    assert not feed._subscriptions  # closing frees it at once


async def test_a_stream_holds_its_clients_slot_until_it_ends() -> None:
    feed = feed_on(InMemoryStatusLog())
    push = push_on(feed)
    stream = push.stream(CUSTOMER, "client", after=None)
    await anext(stream)
    assert push.limit.open_count("client") == 1
    with pytest.raises(RateLimited):
        push.limit.check("client")
    await stream.aclose()
    assert push.limit.open_count("client") == 0


async def test_a_reader_that_falls_behind_is_disconnected() -> None:
    log = InMemoryStatusLog()
    feed = feed_on(log)
    push = push_on(feed, buffer=3)
    taken: list[bytes] = []

    async def slow_reader() -> None:
        async for chunk in push.stream(CUSTOMER, "client", after=None):
            taken.append(chunk)
            await asyncio.sleep(3600)  # stops reading, as a stalled socket does

    reader = asyncio.create_task(slow_reader())
    await asyncio.sleep(0.01)
    for position in range(1, 10):
        b = uuid.uuid4()
        log.commit(recorded(position, requested(b), stream_id=b, version=1))
    await feed.poll()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(reader, 1)
    assert taken == [b"retry: 1000\n\n"]
    assert push.limit.open_count("client") == 0
    assert not feed._subscriptions


async def test_a_reader_cut_off_while_its_socket_is_stalled_frees_its_slot_and_subscription() -> (
    None
):
    """Litestar iterates a stream in a task of its own and, when that task is cancelled in a
    ``send`` (the stalled socket the cut-off is for), abandons the generator without closing
    it: nothing may wait for the generator's ``finally`` (run only by a garbage collection)."""
    log = InMemoryStatusLog()
    feed = feed_on(log)
    push = push_on(feed, buffer=3)
    response = ASGIStreamingResponse(
        iterator=push.stream(CUSTOMER, "client", after=None), media_type="text/event-stream"
    )
    never = asyncio.Event()

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            await never.wait()  # the client reads nothing: the socket's buffer stays full

    async def receive() -> Any:
        await never.wait()  # the client is still connected

    gc.disable()  # a collection would close the abandoned generator and hide the leak
    try:
        scope: Any = {"type": "http"}
        serving = asyncio.create_task(response(scope, receive, send))
        await asyncio.sleep(0.01)
        for position in range(1, 10):
            b = uuid.uuid4()
            log.commit(recorded(position, requested(b), stream_id=b, version=1))
        await feed.poll()
        await asyncio.wait_for(serving, 1)  # the response ends (the server closes it)
        for _ in range(10):
            await asyncio.sleep(0)
        assert push.limit.open_count("client") == 0
        assert not feed._subscriptions
    finally:
        gc.enable()


async def test_a_reader_cut_off_as_its_next_change_arrives_is_still_disconnected() -> None:
    """Python 3.11's ``wait_for`` swallows a cancellation that comes with the change it waits
    for: the cut-off may not rest on the cancellation alone, or the stream lives on without
    its subscription, beating its heart and never sending a change again."""
    log = InMemoryStatusLog()
    feed = feed_on(log)
    push = push_on(feed, buffer=3)

    async def fast_reader() -> None:
        async for _ in push.stream(CUSTOMER, "client", after=None):
            pass

    reader = asyncio.create_task(fast_reader())
    await asyncio.sleep(0.01)  # waiting for a change
    for position in range(1, 6):  # more than the buffer, in one read
        b = uuid.uuid4()
        log.commit(recorded(position, requested(b), stream_id=b, version=1))
    await feed.poll()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(reader, 1)
    assert push.limit.open_count("client") == 0
