"""docs/benchmarks.md is rendered from a run's JSON: every figure shown, every target judged.

`make bench` takes minutes and is not part of the test run, so a report that no longer renders
(or judges a target wrongly) would otherwise surface only at the next benchmark."""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.disk import FsyncProbe, flush_summary
from benchmarks.report import write_report
from benchmarks.stack import fixed_work, host_speed
from hypothesis import given
from hypothesis import strategies as st

RUN = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.json"


def render(results: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "benchmarks.md"
    write_report(results, path)
    return path.read_text()


def test_the_committed_run_renders_with_every_figure(tmp_path: Path) -> None:
    results = json.loads(RUN.read_text())
    report = render(results, tmp_path)
    accept, confirmation = results["accept"], results["confirmation"]
    assert f"| accepted bookings/s | {accept['accepted_per_second']} |" in report
    before, after = accept["raw_write_ceiling_readings"]
    assert f"(mean of {before} and {after}, measured before and after the load)" in report
    assert "| CPU per booking, µs (of " in report
    assert "| cores used by the idle stack, 5 s before the runs (of " in report
    for leg in confirmation["stages_ms"]:
        assert f"| {leg} |" in report
    disk = confirmation["disk_fsync"]
    assert f"max {disk['max_ms']} ms; {disk['over_50_ms']} over 50 ms |" in report
    assert f"{results['relay']['relay_events_per_second']:,} events/s" in report
    before, after = results["host_speed_ms"]
    assert f"took {before} ms of CPU before the run and {after} ms after it" in report


def test_targets_are_judged_at_their_thresholds(tmp_path: Path) -> None:
    results = json.loads(RUN.read_text())
    passing = copy.deepcopy(results)
    passing["accept"].update(accepted_per_second=1000, ratio_to_ceiling=0.4)
    passing["confirmation"].update(p50_ms=29.9, p99_ms=149.9)
    report = render(passing, tmp_path)
    assert "**missed**" not in report.split("## 3.")[0]
    failing = copy.deepcopy(results)
    failing["accept"].update(accepted_per_second=999.9, ratio_to_ceiling=0.399)
    failing["confirmation"].update(p50_ms=30.0, p99_ms=150.0)
    report = render(failing, tmp_path)
    assert report.count("**missed**", 0, report.index("## 3.")) == 4


def test_the_fsync_probe_times_real_flushes(tmp_path: Path) -> None:
    with FsyncProbe(str(tmp_path), interval=0.01) as probe:
        deadline = time.monotonic() + 60  # a flush on these disks sometimes stalls for seconds
        while probe.flushes < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    summary = probe.summary()
    assert summary["flushes"] == len(probe.seconds) >= 5
    assert all(seconds > 0 for seconds in probe.seconds)
    # Only the order of the figures: their size is the disk's (a fast one rounds to 0.0).
    assert 0 <= summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["same_disk_as_mariadb"] is (
        os.stat(tempfile.gettempdir()).st_dev == os.stat(tmp_path).st_dev
    )


def test_the_flush_summary_keeps_p50_p99_and_max_in_order() -> None:
    """A p50 of 0.416 ms and a max of 0.44 ms once read p50 0.42 and max 0.4."""
    summary = flush_summary([0.000416, 0.000416, 0.00044], same_disk=True)
    assert (summary["p50_ms"], summary["p99_ms"], summary["max_ms"]) == (0.42, 0.44, 0.44)


@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), max_size=300))
def test_the_rounded_flush_figures_never_cross(seconds: list[float]) -> None:
    summary = flush_summary(seconds, same_disk=False)
    assert 0 <= summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["flushes"] == len(seconds)


def test_the_host_speed_probe_times_the_same_work_in_cpu_time() -> None:
    assert fixed_work() == fixed_work()  # the same work every time, or runs would not compare
    started = time.process_time()
    median = host_speed(rounds=3)
    spent = (time.process_time() - started) * 1000
    assert 0 < median <= spent  # CPU time of one round, not of all three nor of wall time


def test_the_comparisons_kept_beside_the_report_are_carried_into_it(tmp_path: Path) -> None:
    results = json.loads(RUN.read_text())
    (tmp_path / "benchmarks-ab.md").write_text("## 7. A/B\n\nbefore 10/s, after 9/s\n")
    report = render(results, tmp_path)
    assert report.rstrip().endswith("before 10/s, after 9/s")
    assert "## 6. Footprint" in report


def test_the_confirmation_after_the_accept_load_is_shown_beside_the_fresh_one(
    tmp_path: Path,
) -> None:
    results = json.loads(RUN.read_text())
    results["accept"].pop("confirmation_after", None)
    assert "right after the accept scenario, on its stack | not measured |" in render(
        results, tmp_path
    )
    results["accept"]["confirmation_after"] = {
        "rate_per_second": 200,
        "bookings": 4000,
        "p50_ms": 41.5,
        "p99_ms": 97.25,
    }
    assert (
        "| p50 / p99 right after the accept scenario, on its stack (4000 bookings) | "
        "41.5 / 97.25 ms |"
    ) in render(results, tmp_path)
