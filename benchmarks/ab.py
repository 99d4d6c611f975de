"""Alternating A/B runs of the confirmation path, of the status push or of accept throughput (a
measuring tool, not a test).

    python -m benchmarks.ab --rounds 3 --variant "" --variant TICKETING_KAFKA_FETCH_MAX_WAIT_MS=20
    python -m benchmarks.ab --scenario accept --rounds 3 --variant "" --variant MY_SWITCH=1
    python -m benchmarks.ab --scenario push --rounds 3 --variant "" --variant MY_SWITCH=1
    python -m benchmarks.ab --scenario accept --otlp-sink --variant "" \
        --variant "OTEL_EXPORTER_OTLP_ENDPOINT={sink},OTEL_TRACES_SAMPLER=parentbased_traceidratio,OTEL_TRACES_SAMPLER_ARG=0.1"

Each variant is a set of environment settings for ``ticketing dev`` (an empty one is the code as
it is); ``replicas=N`` in a variant runs ``ticketing dev --replicas N`` instead of a setting. Every run starts a fresh stack, measures the idle stack's cores, a booking alone (one
every 200 ms) and then ``--rate`` bookings/s for ``--seconds``, and prints one JSON line: p50 and
p99 from 202 to CONFIRMED, the booking alone, the cores each process used, and the median, p90
and p99 of each leg of the saga. The variants alternate within each round, so that a drift of
the host's speed (these hosts' speed moves by half within an hour) hits all of them alike; the
host's speed is measured before every run. A summary per variant ends the output. ``--scenario
push`` runs the status push's scenario instead (``benchmarks.status_push``: every twentieth booking
followed by a long-poll or by polling) and adds the saga's legs.

A change to the code itself is compared by gating it on an environment variable while it is
measured: the variants then differ only in that variable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import uvloop
from sqlalchemy import text

from benchmarks.accept import accept_throughput
from benchmarks.confirmation import STAGES, confirmation_latency, confirmed_saga, idle_then_alone
from benchmarks.stack import fresh_stack, host_speed, percentile
from benchmarks.status_push import status_push_latency
from tests.e2e.devprocess import DevProcess
from tests.otlp import otlp_receiver
from ticketing.shared.logging import configure_logging
from ticketing.shared.settings import Settings


def parse_variant(spec: str) -> dict[str, str]:
    """``"A=1,B=2"`` as ``{"A": "1", "B": "2"}``; ``""`` is the code as it is."""
    settings: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise argparse.ArgumentTypeError(f"{item!r} is not NAME=VALUE")
        settings[name] = value
    return settings


def spread(values: list[float]) -> list[float]:
    """Median, p90 and p99 of ``values`` (ms), rounded."""
    return [round(percentile(values, share), 1) for share in (0.5, 0.9, 0.99)]


async def leg_spreads(dev: DevProcess, since: datetime) -> dict[str, list[float]]:
    """Median, p90 and p99 of each leg of the saga for the bookings confirmed since ``since``,
    from the timestamps every service writes (one MariaDB server, so one clock)."""
    legs = ", ".join(
        f"TIMESTAMPDIFF(MICROSECOND, {start}, {end})" for start, end in STAGES.values()
    )
    query = text(f"SELECT {legs} {await confirmed_saga(dev)} AND b.created_at >= :since")
    async with dev.engines["booking"].connect() as conn:
        rows = (await conn.execute(query, {"since": since.replace(tzinfo=None)})).all()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in STAGES]
    return {
        stage: spread([value / 1000 for value in column])
        for stage, column in zip(STAGES, columns, strict=True)
    }


# What the summary lists for each scenario, per variant and in run order.
SUMMARY_KEYS = {
    "confirmation": ("p50_ms", "p99_ms", "alone_p50_ms", "idle_cores", "host_speed_ms"),
    "accept": ("accepted_per_second", "p99_ms", "cpu_us_per_booking_total", "host_speed_ms"),
    "push": ("long_poll_p50_ms", "long_poll_p99_ms", "poll_10ms_p50_ms", "host_speed_ms"),
}


async def measure_accept(dev: DevProcess, seconds: float) -> dict[str, Any]:
    accept = await accept_throughput(dev, int(seconds))
    keys = ("accepted_per_second", "p50_ms", "p99_ms", "errors", "cores_used", "cpu_us_per_booking")
    figures = {key: accept[key] for key in keys}
    figures["cpu_us_per_booking_total"] = sum(accept["cpu_us_per_booking"].values())
    return figures


async def measure(
    env: dict[str, str], rate: float, seconds: float, scenario: str = "confirmation"
) -> dict[str, Any]:
    """One run of one variant on a fresh stack."""
    speed = host_speed()  # before the stack starts: the host alone
    base = dataclasses.replace(
        Settings.from_env(), db_prefix=f"ticketing_ab_{uuid.uuid4().hex[:6]}_"
    )
    settings = {name: value for name, value in env.items() if name != "replicas"}
    async with fresh_stack(base, settings, replicas=int(env.get("replicas", "1"))) as dev:
        if scenario == "accept":
            figures = await measure_accept(dev, seconds)
            return {"scenario": scenario, "variant": env, "host_speed_ms": speed, **figures}
        idle_cores, alone = await idle_then_alone(dev)
        since = datetime.now(UTC)
        if scenario == "push":
            push = await status_push_latency(dev, rate, seconds)
            return {
                "scenario": scenario,
                "variant": env,
                "host_speed_ms": speed,
                **{
                    f"{way}_{key}": push[way][key]
                    for way in ("long_poll", "poll_10ms")
                    for key in ("p50_ms", "p99_ms")
                },
                "alone_p50_ms": alone["p50_ms"],
                "errors": push["errors"],
                "legs_p50_p90_p99_ms": await leg_spreads(dev, since),
            }
        loaded = await confirmation_latency(dev, rate=rate, seconds=seconds)
        legs = await leg_spreads(dev, since)
    return {
        "scenario": scenario,
        "variant": env,
        "host_speed_ms": speed,
        "p50_ms": loaded["p50_ms"],
        "p99_ms": loaded["p99_ms"],
        "alone_p50_ms": alone["p50_ms"],
        "confirmed": loaded["confirmed"],
        "errors": loaded["errors"],
        "idle_cores": round(sum(idle_cores.values()), 2),
        "cores_used": loaded["cores_used"],
        "legs_p50_p90_p99_ms": legs,
    }


def summary(runs: list[dict[str, Any]]) -> list[str]:
    """One line per variant with its scenario's figures (``SUMMARY_KEYS``), in run order."""
    lines = []
    variants: list[dict[str, str]] = []
    for run in runs:
        if run["variant"] not in variants:
            variants.append(run["variant"])
    for variant in variants:
        mine = [run for run in runs if run["variant"] == variant]
        label = ",".join(f"{k}={v}" for k, v in variant.items()) or "(as it is)"
        figures = {
            key: ", ".join(str(run[key]) for run in mine)
            for key in SUMMARY_KEYS[mine[0].get("scenario", "confirmation")]
        }
        lines.append(f"{label}: " + "; ".join(f"{k} {v}" for k, v in figures.items()))
    return lines


def with_sink(variant: dict[str, str], sink: str) -> dict[str, str]:
    """``variant`` with ``{sink}`` in its values replaced by the OTLP receiver's address."""
    return {name: value.replace("{sink}", sink) for name, value in variant.items()}


async def main(args: argparse.Namespace) -> None:
    configure_logging(Settings.from_env(), "bench")  # to stderr: stdout carries the results
    seconds = args.seconds or (20 if args.scenario == "confirmation" else 30)
    runs = []
    async with contextlib.AsyncExitStack() as stack:
        sink = ""
        if args.otlp_sink:
            receiver = await stack.enter_async_context(otlp_receiver(decode_spans=False))
            sink = receiver.url
        for _ in range(args.rounds):
            for variant in args.variant or [{}]:
                run = await measure(with_sink(variant, sink), args.rate, seconds, args.scenario)
                run["variant"] = variant  # as given, so that the rounds of a variant group
                runs.append(run)
                print(json.dumps(run), flush=True)
        if args.otlp_sink:
            print(
                f"trace exports: {receiver.requests}, {receiver.received_bytes} bytes", flush=True
            )
    for line in summary(runs):
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every variant (3)")
    parser.add_argument(
        "--scenario",
        choices=sorted(SUMMARY_KEYS),
        default="confirmation",
        help="confirmation latency at --rate (the default), the status push at --rate, or "
        "accept throughput",
    )
    parser.add_argument("--rate", type=float, default=200, help="bookings/s (200)")
    parser.add_argument(
        "--seconds", type=float, help="length of each run (20 for confirmation, 30 for the others)"
    )
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        help='NAME=VALUE[,NAME=VALUE...] for ticketing dev; "" for the code as it is '
        "(repeat for each variant)",
    )
    parser.add_argument(
        "--otlp-sink",
        action="store_true",
        help="run an OTLP/HTTP trace receiver for the run; {sink} in a variant is its address",
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser.parse_args()))
