"""A run's results drawn as pictures for docs/benchmarks.md, since people would rather look than
read. matplotlib is the bench's own dependency (the ``bench`` extra); the figures are drawn off
screen by the Agg canvas, with no display and no global pyplot state."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

# Each picture's file name, by what it shows (the keys report.py embeds them by).
PICTURES = {
    "accept_throughput": "bench-accept-throughput.png",
    "confirmation_latency": "bench-confirmation-latency.png",
    "cpu_per_booking": "bench-cpu-per-booking.png",
}

LATENCY_TICKS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000)


def new_figure() -> Figure:
    figure = Figure(figsize=(7, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def accept_throughput(results: dict[str, Any]) -> Figure | None:
    """Accepted bookings in each second of the accept run, against the run's mean and the
    raw-write ceiling: a steady line means no stall hid behind the mean."""
    accept = results.get("accept", {})
    series = accept.get("accepted_each_second")
    if not series:
        return None
    figure = new_figure()
    axes = figure.add_subplot()
    seconds = range(1, len(series) + 1)
    axes.plot(seconds, series, marker=".", label="accepted in that second")
    axes.axhline(accept["accepted_per_second"], linestyle="--", color="grey", label="mean (wrk)")
    if "raw_write_ceiling_per_second" in accept:
        axes.axhline(
            accept["raw_write_ceiling_per_second"],
            linestyle=":",
            color="black",
            label="raw-write ceiling",
        )
    axes.set_ylim(bottom=0)
    axes.set_xlabel("second of the run")
    axes.set_ylabel("bookings accepted")
    axes.set_title(f"Accept throughput, {accept.get('concurrency', '?')} connections")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    return figure


def confirmation_latency(results: dict[str, Any]) -> Figure | None:
    """The share of bookings confirmed within each latency, on a fresh stack and on the stack the
    accept run had just loaded: the whole distribution, not only its p50 and p99."""
    runs = {
        "fresh stack": results.get("confirmation", {}),
        "after the accept load": results.get("accept", {}).get("confirmation_after", {}),
    }
    # A logarithmic axis has no zero: a run that confirmed nothing has no point to show.
    curves = {
        f"{label}, {run['rate_per_second']:g}/s": [
            (ms, share) for share, ms in enumerate(run["percentiles_ms"]) if ms > 0
        ]
        for label, run in runs.items()
        if any(ms > 0 for ms in run.get("percentiles_ms", []))
    }
    if not curves:
        return None
    figure = new_figure()
    axes = figure.add_subplot()
    for label, points in curves.items():
        axes.plot([ms for ms, _ in points], [share for _, share in points], label=label)
    axes.set_xscale("log")
    # Round figures in ms rather than powers of ten, over the range the curves span.
    spanned = [ms for points in curves.values() for ms, _ in points]
    ticks = [t for t in LATENCY_TICKS_MS if min(spanned) / 2 <= t <= max(spanned) * 2]
    axes.set_xticks(ticks, [f"{t:g}" for t in ticks])
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_ylim(0, 100)
    axes.set_yticks([0, 25, 50, 75, 99])
    for share in (50, 99):
        axes.axhline(share, linestyle=":", color="grey", linewidth=0.8)
    axes.set_xlabel("from the 202 to CONFIRMED, ms (log scale)")
    axes.set_ylabel("bookings confirmed within, %")
    axes.set_title("Confirmation latency")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3, which="both")
    return figure


def cpu_per_booking(results: dict[str, Any]) -> Figure | None:
    """The CPU each process spends per booking, at full load and at the fixed rate, side by side:
    where a booking's cost goes, and how it changes with the load."""
    runs = {}
    accept = results.get("accept", {})
    if accept.get("cpu_us_per_booking"):
        runs[f"accept, {accept['accepted_per_second']:g}/s"] = accept["cpu_us_per_booking"]
    fixed = results.get("confirmation", {})
    if fixed.get("cpu_us_per_booking"):
        runs[f"fixed rate, {fixed['rate_per_second']:g}/s"] = fixed["cpu_us_per_booking"]
    if not runs:
        return None
    processes = list(dict.fromkeys(name for costs in runs.values() for name in costs))
    figure = new_figure()
    axes = figure.add_subplot()
    width = 0.8 / len(runs)
    for index, (label, costs) in enumerate(runs.items()):
        offsets = [k + (index - (len(runs) - 1) / 2) * width for k in range(len(processes))]
        bars = axes.bar(offsets, [costs.get(p, 0) for p in processes], width, label=label)
        axes.bar_label(bars, fontsize=7)
    axes.set_xticks(range(len(processes)), processes)
    axes.set_ylabel("CPU per booking, µs")
    axes.set_title("CPU cost of a booking, by process")
    axes.legend()
    axes.grid(alpha=0.3, axis="y")
    return figure


PAINTERS: dict[str, Callable[[dict[str, Any]], Figure | None]] = {
    "accept_throughput": accept_throughput,
    "confirmation_latency": confirmation_latency,
    "cpu_per_booking": cpu_per_booking,
}


def draw(results: dict[str, Any], directory: Path) -> dict[str, Path]:
    """Every picture whose figures the run holds, written into ``directory``; the paths written,
    by the picture's key. A run without a picture's figures leaves its old file alone, and the
    report leaves it out."""
    directory.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for key, painter in PAINTERS.items():
        figure = painter(results)
        if figure is None:
            continue
        path = directory / PICTURES[key]
        # No software version in the file: a new matplotlib alone should not change the picture.
        figure.savefig(path, dpi=100, metadata={"Software": None})
        drawn[key] = path
    return drawn
