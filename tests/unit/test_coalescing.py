import asyncio
from typing import Any, cast

from ticketing.shared.http.serving import CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


def coalescing(inner: RecordingTransport) -> CoalescingTransport:
    return CoalescingTransport(cast(asyncio.Transport, inner), asyncio.get_running_loop())


async def test_the_writes_of_one_loop_turn_leave_as_one() -> None:
    inner = RecordingTransport()
    transport = coalescing(inner)
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"body")
    assert inner.writes == []  # held until the end of the turn
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]


async def test_closing_sends_what_is_held_first() -> None:
    inner = RecordingTransport()
    transport = coalescing(inner)
    transport.writelines([b"a", b"b"])
    transport.close()
    assert inner.writes == [b"ab"]
    assert inner.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert inner.writes == [b"ab"]


async def test_nothing_is_written_to_a_closing_transport() -> None:
    inner = RecordingTransport()
    transport = coalescing(inner)
    transport.write(b"late")
    inner.closed = True  # the peer went away meanwhile
    await asyncio.sleep(0)
    assert inner.writes == []


async def test_everything_else_reaches_the_real_transport() -> None:
    transport = coalescing(RecordingTransport())
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
