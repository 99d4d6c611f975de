"""Calls spread over an upstream's replicas, against real sockets: turns (even when a replica is
passed over), a dead or unready replica passed over, a breaker per replica, 503 only when none
answers, and the readiness watcher's checks."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from tests.harness.processes import free_port
from tests.integration.replica_servers import answered_by, replicas, upstream
from ticketing.shared.correlation import correlation_id_bound, current_correlation_id
from ticketing.shared.errors import Unavailable
from ticketing.shared.http.breaker import BreakerState, CircuitBreaker, CircuitOpen
from ticketing.shared.http.replicas import Replica as UpstreamReplica
from ticketing.shared.http.upstream import Upstream


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Until the background readiness checks have brought ``condition`` about."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_calls_take_turns_over_the_replicas() -> None:
    async with replicas("a", "b", "c") as (_, urls), upstream(urls) as client:
        names = [await answered_by(client) for _ in range(6)]
    assert Counter(names) == {"a": 2, "b": 2, "c": 2}


async def test_a_dead_replica_is_passed_over_for_reads_and_writes() -> None:
    async with replicas("a") as ([a], [live]), upstream([dead_url(), live]) as client:
        names = [await answered_by(client, method) for method in ("POST", "GET") * 4]
        assert names == ["a"] * 8
        assert a.seen == {"POST": 4, "GET": 4}  # each write reached a replica exactly once
        dead_replica = client.replicas[0]
        assert dead_replica.ready is False  # passed over until its check passes again


async def test_an_unready_replica_gets_no_calls_while_another_is_ready() -> None:
    async with replicas("a", "b") as ([a, _b], urls), upstream(urls, ready_every=0.05) as client:
        a.ready = False
        await answered_by(client)  # starts the readiness checks
        await until(lambda: not client.replicas[0].ready)
        before = a.seen["GET"]
        names = [await answered_by(client) for _ in range(6)]
        assert names == ["b"] * 6
        assert a.seen["GET"] == before
        a.ready = True
        await until(lambda: client.replicas[0].ready)
        names = [await answered_by(client) for _ in range(6)]
        assert Counter(names) == {"a": 3, "b": 3}  # back in turn once ready again


async def test_when_no_replica_is_ready_the_unready_ones_are_still_tried() -> None:
    async with replicas("a", "b") as ([a, b], urls), upstream(urls, ready_every=0.05) as client:
        a.ready = b.ready = False  # a stale or strict check must not stop calls that can succeed
        await answered_by(client)
        await until(lambda: not any(r.ready for r in client.replicas))
        assert {await answered_by(client) for _ in range(4)} == {"a", "b"}


async def test_each_replica_has_its_own_breaker() -> None:
    def breakers(name: str) -> CircuitBreaker:
        return CircuitBreaker(name, window=4, min_calls=2, open_seconds=30)

    async with replicas("a", "b") as ([a, _b], urls), upstream(urls, breakers=breakers) as client:
        a.status = 500
        failures = 0
        for _ in range(8):
            try:
                assert await answered_by(client) == "b"
            except Unavailable:
                failures += 1  # a 5xx is the replica's answer: the call is not sent again
        assert failures == 2  # then a's breaker opened and only b was called
        states = [r.breaker.state for r in client.replicas]
        assert states == [BreakerState.OPEN, BreakerState.CLOSED]
        assert [r.breaker.name for r in client.replicas] == ["svc[0]", "svc[1]"]
        assert [await answered_by(client, "POST") for _ in range(3)] == ["b"] * 3


async def test_the_refusal_comes_only_when_every_replica_refuses() -> None:
    def breakers(name: str) -> CircuitBreaker:
        return CircuitBreaker(name, window=2, min_calls=1, open_seconds=30)

    async with upstream([dead_url(), dead_url()], breakers=breakers) as client:
        with pytest.raises(Unavailable) as first:
            await answered_by(client)
        assert not isinstance(first.value, CircuitOpen)  # both were tried, both refused
        assert [r.breaker.state for r in client.replicas] == [BreakerState.OPEN] * 2
        with pytest.raises(CircuitOpen) as refused:
            await answered_by(client, "POST")
        assert refused.value.extensions["retry_after"] >= 25


class FailingOnce(Upstream):
    """An upstream whose first readiness check of each replica fails in an unexpected way."""

    failed: set[str]

    async def _check(self, replica: UpstreamReplica) -> None:
        if replica.url not in self.failed:
            self.failed.add(replica.url)
            raise ValueError("an unexpected failure in a check")
        await super()._check(replica)


async def test_a_check_that_fails_unexpectedly_does_not_stop_the_checks() -> None:
    async with replicas("a", "b") as ([a, _b], urls):
        client = FailingOnce("svc", urls, timeout=2.0, ready_every=0.05)
        client.failed = set()
        try:
            a.ready = False
            await answered_by(client)
            await until(lambda: not client.replicas[0].ready)
            assert client.failed == set(urls)
        finally:
            await client.aclose()  # and closing raises nothing


async def test_turns_stay_even_over_the_replicas_left_when_one_is_passed_over() -> None:
    """With a, b and c and a unready, b and c share the calls: b must not take a's turns too."""
    async with (
        replicas("a", "b", "c") as ([a, _b, _c], urls),
        upstream(urls, ready_every=3600) as client,
    ):
        a.ready = False
        await answered_by(client)  # starts the readiness checks: one round, then an hour
        await until(lambda: not client.replicas[0].ready)
        names = Counter([await answered_by(client) for _ in range(12)])
    assert names == {"b": 6, "c": 6}


class Recording(Upstream):
    """An upstream that notes the correlation id its readiness checks run under."""

    seen: list[str | None]

    async def _check(self, replica: UpstreamReplica) -> None:
        self.seen.append(current_correlation_id())
        await super()._check(replica)


@contextlib.asynccontextmanager
async def recording(urls: list[str]) -> AsyncIterator[Recording]:
    client = Recording("svc", urls, timeout=2.0, ready_every=0.05)
    client.seen = []
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_readiness_checks_do_not_log_under_the_first_callers_correlation_id() -> None:
    """The checks run for the upstream's whole life: their log lines belong to no request, not
    to whichever request happened to make the first call."""
    async with replicas("a", "b") as (_, urls), recording(urls) as client:
        with correlation_id_bound("first-request"):
            await answered_by(client)
        await until(lambda: len(client.seen) >= 4)
    assert set(client.seen) == {None}


async def test_a_readiness_probe_answers_ready_when_one_replica_is_ready() -> None:
    """The gateway's readiness asks each upstream through probe(): an unready replica's 503
    must not stand for the upstream while another replica is ready."""
    async with replicas("a", "b") as ([a, _b], urls), upstream(urls) as client:
        a.ready = False
        answers = [(await client.probe("/health/ready")).status_code for _ in range(2)]
    assert answers == [200, 200]
