"""``make bench``: drive a fresh stack (``ticketing dev``) per scenario through the gateway from this
separate process, measure the ceilings in the same run, and write docs/benchmarks.md (with its
pictures in docs/img/) and docs/benchmarks.json.

    python -m benchmarks [--seconds 30] [--output docs/benchmarks.json]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.accept import accept_scenario
from benchmarks.confirmation import confirmation_scenario
from benchmarks.flash_sale import flash_sale
from benchmarks.footprint import footprint
from benchmarks.relay import relay_throughput
from benchmarks.report import write_report
from benchmarks.stack import fresh_stack, host_speed, machine
from benchmarks.status_push import status_push_latency
from tests.e2e.devprocess import DevProcess
from ticketing.shared.logging import configure_logging
from ticketing.shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("accept", "confirmation", "push", "relay", "flash")


async def run_scenario(
    scenario: str, dev: DevProcess, args: argparse.Namespace, results: dict[str, Any]
) -> None:
    if scenario == "accept":
        results["accept"] = await accept_scenario(dev, args.seconds, args.rate)
    elif scenario == "confirmation":
        results["confirmation"] = await confirmation_scenario(dev, args.rate)
    elif scenario == "push":
        results["push"] = await status_push_latency(dev, rate=args.rate, seconds=30)
    elif scenario == "relay":
        results["relay"] = await relay_throughput(dev, rows=args.relay_rows)
    else:
        results["flash_sale"] = await flash_sale(dev, tickets=100, buyers=5000)


async def main(args: argparse.Namespace) -> None:
    # Imported before the run, not after it: a missing matplotlib should stop the run at once
    # rather than after minutes of measuring.
    from benchmarks.plots import draw

    base = dataclasses.replace(
        Settings.from_env(), db_prefix=f"ticketing_bench_{uuid.uuid4().hex[:6]}_"
    )
    configure_logging(base, "bench")  # to stderr: stdout carries the JSON
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "make bench",
    }
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    speed_before = host_speed()  # no stack running yet
    after: dict[str, float] = {}
    for scenario in (s for s in SCENARIOS if s in only):
        # Each scenario gets a fresh stack (empty databases, empty broker): Tansu keeps every
        # record batch in memory and lists all of a partition's batches on every fetch, so the
        # history one scenario leaves behind would slow the broker down for the next.
        async with fresh_stack(base) as dev:
            results.setdefault("footprint_idle_mb", footprint(dev))
            print(f"{scenario} ...", file=sys.stderr)
            await run_scenario(scenario, dev, args, results)
            for name, value in footprint(dev).items():
                after[name] = max(after.get(name, 0.0), value)
    results["footprint_after_mb"] = after
    results["host_speed_ms"] = [speed_before, host_speed()]  # the last stack is stopped
    print(json.dumps(results, indent=2))
    if only != set(SCENARIOS):
        return  # a partial run is for measuring one change; the report needs every scenario
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    docs = REPO / "docs"
    write_report(results, docs / "benchmarks.md", draw(results, docs / "img"))


def parser() -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    arguments.add_argument("--seconds", type=int, default=30, help="accept throughput duration")
    arguments.add_argument("--rate", type=float, default=200, help="bookings/s for the latency run")
    arguments.add_argument("--relay-rows", type=int, default=100_000)
    arguments.add_argument(
        "--only",
        help=f"comma-separated scenarios to run ({','.join(SCENARIOS)}); "
        "a partial run prints its JSON and writes no report",
    )
    arguments.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.json")
    return arguments


if __name__ == "__main__":
    # uvloop, as under `ticketing serve`: the relay scenario runs the services' own relay in
    # this process, and is meant to measure it as the services run it.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parser().parse_args()))
