"""docs/benchmarks.md from one run's results: figures, pictures, ratios to the ceilings, targets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def cores(used: dict[str, float], label: str = "cores used per process") -> str:
    """Where the two cores went during a scenario (load generator not included)."""
    parts = ", ".join(f"{name} {value:.2f}" for name, value in used.items() if value >= 0.01)
    return f"| {label} (of {sum(used.values()):.2f} in all) | {parts} |"


def per_booking(used: dict[str, int]) -> str:
    parts = ", ".join(f"{name} {value}" for name, value in used.items())
    return f"| CPU per booking, µs (of {sum(used.values()):,} in all) | {parts} |"


def disk_row(disk: dict[str, Any]) -> str:
    """The disk's flushes beside the run: a stalled flush holds up every commit behind it."""
    where = "the disk of MariaDB's data" if disk["same_disk_as_mariadb"] else "another disk"
    return (
        f"| a 512-byte write and fdatasync every 50 ms during the run, on {where} "
        f"({disk['flushes']} flushes) | p50 {disk['p50_ms']} / p99 {disk['p99_ms']} / "
        f"max {disk['max_ms']} ms; {disk['over_50_ms']} over 50 ms |"
    )


def host_speed_line(readings: list[float]) -> str:
    """How fast the host was during the run, for comparing runs (see ``host_speed``)."""
    before, after = readings
    return (
        f"The host's speed: a fixed piece of pure-Python work took {before} ms of CPU before "
        f"the run and {after} ms after it (lower is faster; these hosts' speed moves by half "
        "within an hour, so compare runs by it)."
    )


# Alternating A/B runs of one change against the code before it (python -m benchmarks.ab),
# written by hand beside the report and carried into it by every run.
COMPARISONS = "benchmarks-ab.md"


def after_accept_row(accept: dict[str, Any]) -> str:
    """The same rate measured on the stack the accept scenario had just loaded."""
    after = accept.get("confirmation_after")
    if after is None:
        return "| p50 / p99 right after the accept scenario, on its stack | not measured |"
    return (
        f"| p50 / p99 right after the accept scenario, on its stack ({after['bookings']} "
        f"bookings) | {after['p50_ms']} / {after['p99_ms']} ms |"
    )


def push_section(push: dict[str, Any] | None) -> list[str]:
    """Section 5: how soon a client holds a booking's outcome, by long-poll and by polling."""
    head = ["## 5. Status push", ""]
    if push is None:
        return [*head, "Not measured in this run.", ""]
    long_poll, poll = push["long_poll"], push["poll_10ms"]
    return [
        *head,
        f"{push['rate_per_second']:g} bookings/s for {push['seconds']:g} s through the gateway; "
        "every twentieth followed to its outcome as a client would, alternately by a long-poll "
        "(`GET /api/v1/bookings/{id}?wait=30`) and by a GET every 10 ms. The time runs from "
        "sending the POST to holding the outcome.",
        "",
        "| way | followed | p50 ms | p99 ms |",
        "| --- | --- | --- | --- |",
        f"| long-poll | {long_poll['awaited']} | {long_poll['p50_ms']} | {long_poll['p99_ms']} |",
        f"| GET every 10 ms | {poll['awaited']} | {poll['p50_ms']} | {poll['p99_ms']} |",
        "",
        f"Target: long-poll p50 under 50 ms ({mark(long_poll['p50_ms'] < 50)}); "
        f"{push['errors']} errors.",
        "",
    ]


def picture(pictures: Mapping[str, Path], key: str, alt: str, report: Path) -> list[str]:
    """The Markdown that shows a drawn picture, linked relative to the report; nothing when the
    run did not draw it (a run without its figures)."""
    drawn = pictures.get(key)
    if drawn is None:
        return []
    return [f"![{alt}]({Path(os.path.relpath(drawn, report.parent)).as_posix()})", ""]


def write_report(r: dict[str, Any], path: Path, pictures: Mapping[str, Path] | None = None) -> None:
    """The report of run ``r`` at ``path``, with the ``pictures`` drawn of it (see plots.py)."""
    m, a, c, rel, f = r["machine"], r["accept"], r["confirmation"], r["relay"], r["flash_sale"]
    idle, load, after = r["footprint_idle_mb"], a["rss_under_load_mb"], r["footprint_after_mb"]
    versions = ", ".join(f"{name} {value}" for name, value in m["versions"].items())
    pictures = pictures or {}
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `{r['command']}` on {r['date']}: {m['cpus']} cores ({m['cpu']}), "
        f"{m['memory_gb']} GB, Python {m['python']}, {m['mariadb']}, {m['broker']}; {versions}.",
        host_speed_line(r["host_speed_ms"]),
        "Everything runs on that one machine at once: MariaDB, the broker, the OIDC server, the four",
        "services (`ticketing dev`, log level WARNING) and the load generator. These machines are",
        "noisy, so every figure that matters is also a ratio to a ceiling measured in the same run.",
        "Each scenario starts on a fresh stack (empty databases, empty broker): the broker keeps",
        "every record batch in memory and lists all of a partition's batches on each fetch, so a",
        "scenario run after another would also measure the first one's leftovers.",
        "The JSON of the run is `docs/benchmarks.json`; what was profiled and what moved the",
        "figures is in `docs/performance-log.md`.",
        "",
        "## 1. Accept throughput",
        "",
        f"`POST /api/v1/bookings` through the gateway, {a['concurrency']} connections for "
        f"{a['seconds']} s (wrk), one large event, a real token.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| accepted bookings/s | {a['accepted_per_second']} |",
        f"| latency p50 / p95 / p99 | {a['p50_ms']} / {a['p95_ms']} / {a['p99_ms']} ms |",
        f"| errors | {a['errors']} of {a['requests']} |",
        "| ceiling: the same write (the booking row and its BookingRequested event, "
        "payload and headers as booking builds them) in raw aiomysql, one process, "
        "64 connections, into a scratch copy of the tables | "
        f"{a['raw_write_ceiling_per_second']}/s (mean of "
        f"{' and '.join(str(v) for v in a['raw_write_ceiling_readings'])}, "
        "measured before and after the load) |",
        f"| ratio to the ceiling | {a['ratio_to_ceiling']} |",
        f"| time for the saga to settle them all after the load stopped | {a['saga_drain_seconds']} s |",
        cores(a["cores_used"]),
        per_booking(a["cpu_us_per_booking"]),
        "",
        *picture(pictures, "accept_throughput", "Accepted bookings in each second", path),
        "Accepting is faster than settling: the saga (order's reservations, two consumers, two",
        "relays) works off the backlog after the load stops; the next measurement starts only then.",
        "",
        f"Targets: at least 1,000 accepted/s ({mark(a['accepted_per_second'] >= 1000)}) and at least "
        f"40% of the ceiling ({mark(a['ratio_to_ceiling'] >= 0.4)}).",
        "",
        "## 2. Confirmation latency",
        "",
        f"{c['bookings']} bookings at a fixed {c['rate_per_second']}/s; latency from the booking's "
        "commit (the 202) to the commit of CONFIRMED, from the booking's own timestamps.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| p50 | {c['p50_ms']} ms |",
        f"| p99 | {c['p99_ms']} ms |",
        f"| max | {c['max_ms']} ms |",
        f"| p50 / p99 of a booking alone (one every 200 ms, same stack, just before) | "
        f"{c['alone']['p50_ms']} / {c['alone']['p99_ms']} ms |",
        after_accept_row(a),
        f"| p50 at {c['rate_per_second']}/s over p50 alone | "
        f"{round(c['p50_ms'] / max(c['alone']['p50_ms'], 0.1), 2)} |",
        f"| confirmed / requested / errors | {c['confirmed']} / {c['bookings']} / {c['errors']} |",
        cores(c["cores_used"]),
        per_booking(c["cpu_us_per_booking"]),
        cores(c["idle_cores_used"], "cores used by the idle stack, 5 s before the runs"),
        disk_row(c["disk_fsync"]),
        "",
        *picture(pictures, "confirmation_latency", "Confirmation latency distribution", path),
        "Where the time goes (mean per leg, from the timestamps each service writes; the legs",
        "add up to the mean, not the median):",
        "",
        "| leg | mean |",
        "| --- | --- |",
        *(f"| {leg} | {ms} ms |" for leg, ms in c["stages_ms"].items()),
        "",
        *picture(pictures, "cpu_per_booking", "CPU per booking, by process", path),
        f"Targets: p50 under 30 ms ({mark(c['p50_ms'] < 30)}), p99 under 150 ms "
        f"({mark(c['p99_ms'] < 150)}).",
        "",
        "## 3. Relay throughput",
        "",
        f"{rel['rows']:,} pending events drained to the broker by the outbox relay, against a "
        "bare aiokafka producer sending the same messages in the same run.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| relay | {rel['relay_events_per_second']:,} events/s |",
        f"| raw producer | {rel['raw_producer_per_second']:,} messages/s |",
        f"| ratio | {rel['ratio']} |",
        "",
        f"Target: at least 20,000 events/s ({mark(rel['relay_events_per_second'] >= 20000)}).",
        "",
        "## 4. Flash sale",
        "",
        f"{f['tickets']} tickets, {f['buyers']:,} concurrent single-ticket bookings.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| HTTP answers | {', '.join(f'{k}: {v}' for k, v in sorted(f['http_statuses'].items()))} |",
        f"| accepted (202) | {f['accepted']} |",
        f"| CONFIRMED / REJECTED / PENDING | {f['confirmed']} / {f['rejected']} / {f['pending']} |",
        f"| all answered after | {f['seconds_to_answer_all']} s |",
        f"| all settled after | {f['seconds_to_settle_all']} s |",
        f"| `ticketing projections verify` after it | {f.get('projections', 'not run')} |",
        "",
        "409 answers are the advisory refusals at the door (the event visibly sold out); every",
        "accepted booking settles. Target: exactly "
        f"{f['tickets']} CONFIRMED and none PENDING "
        f"({mark(f['confirmed'] == f['tickets'] and f['pending'] == 0)}).",
        "",
        *push_section(r.get("push")),
        "## 6. Footprint (RSS, MB)",
        "",
        "| service | idle | peak under load (accept) | after load (largest after any scenario) |",
        "| --- | --- | --- | --- |",
        *(f"| {s} | {idle[s]} | {load.get(s, 0)} | {after[s]} |" for s in idle),
        "",
    ]
    comparisons = path.with_name(COMPARISONS)
    if comparisons.is_file():  # kept by hand: a run of make bench does not measure them
        lines += [comparisons.read_text().rstrip(), ""]
    path.write_text("\n".join(lines))
