"""Faults injected into ``ticketing dev``'s processes: a kill -9 or a pause of one process, the
replica whose relay publishes killed, the broker's topics checked after it restarted empty, and a
server (Redis) taken away behind a TCP forwarder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import httpx

from tests.e2e.devprocess import DevProcess
from tests.harness.broker import topic_partitions
from ticketing.contracts.events import BOOKINGS_TOPIC, ORDERS_TOPIC


async def at(delay: float, action: object) -> None:
    await asyncio.sleep(delay)
    await action  # type: ignore[misc]


async def kill(dev: DevProcess, needle: str) -> None:
    pid = dev.child(needle)
    assert pid is not None, needle
    os.kill(pid, signal.SIGKILL)


async def pause(dev: DevProcess, needle: str, seconds: float) -> None:
    pid = dev.child(needle)
    assert pid is not None, needle
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


async def relay_leader(dev: DevProcess, service: str) -> str:
    """The address of the replica of ``service`` whose relay publishes (waits for one)."""
    async with httpx.AsyncClient(timeout=2) as http, asyncio.timeout(30):
        while True:
            for url in dev.urls(service):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url + "/health/ready")).json().get("relay") == "leader":
                        return url
            await asyncio.sleep(0.2)


async def kill_replica(dev: DevProcess, service: str, url: str) -> None:
    await kill(dev, f"serve {service} --port {url.rsplit(':', 1)[1]}")


async def kill_relay_leader(dev: DevProcess, service: str, took_over: list[float]) -> None:
    """Kill the replica whose relay publishes; time until the other replica publishes."""
    leader = await relay_leader(dev, service)
    await kill_replica(dev, service, leader)
    killed_at = asyncio.get_running_loop().time()
    (other,) = set(dev.urls(service)) - {leader}
    async with httpx.AsyncClient(timeout=2) as http, asyncio.timeout(30):
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if (await http.get(other + "/health/ready")).json().get("relay") == "leader":
                    break
            await asyncio.sleep(0.1)
    took_over.append(asyncio.get_running_loop().time() - killed_at)


async def store_unavailable_count(dev: DevProcess) -> float:
    """How many requests the gateway replicas let through on their own budget while the
    shared rate limit store did not answer."""
    headers = {"Authorization": f"Bearer {await dev.token()}"}
    total = 0.0
    async with httpx.AsyncClient(headers=headers, timeout=5) as http:
        for url in dev.urls("gateway"):
            for line in (await http.get(url + "/metrics")).text.splitlines():
                if line.startswith("gateway_rate_limit_store_unavailable_total "):
                    total += float(line.split()[1])
    return total


async def topics_recreated(dev: DevProcess) -> None:
    """The restarted broker has every topic with all its partitions again. A topic left with
    fewer loses messages for good: producers that knew all the partitions keep publishing to
    the missing ones, Tansu acknowledges them, and no consumer is assigned them."""
    bootstrap = dev.env["TICKETING_KAFKA_BOOTSTRAP"]
    found = await topic_partitions(bootstrap, BOOKINGS_TOPIC, ORDERS_TOPIC)
    expected = dev.settings.kafka_partitions
    assert found == dict.fromkeys((BOOKINGS_TOPIC, ORDERS_TOPIC), expected), (
        f"the broker restarted empty came back with {found}, not {expected} partitions each: a "
        "client's metadata request made Tansu create the topic (with 4 partitions) first, and "
        "`ticketing dev` (devstack.create_topics) did not make it again; messages published "
        "to the partitions missing are acknowledged and never consumed"
    )


class Passage:
    """A TCP forwarder to a server (Redis), which a test can take away for a while: it then
    refuses connections and drops the open ones, as a server that went down does."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def away(self, seconds: float) -> None:
        await self.stop()
        await asyncio.sleep(seconds)
        await self.start(self.port)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._open.difference_update((writer, upstream_writer))
