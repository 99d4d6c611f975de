"""The A/B tool's own logic: variants as given on the command line, and the summary that
groups the alternating runs back by variant."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from benchmarks.ab import parse_variant, spread, summary


def test_a_variant_is_a_set_of_environment_settings() -> None:
    assert parse_variant("") == {}
    assert parse_variant("A=1, B=x=y") == {"A": "1", "B": "x=y"}
    assert parse_variant("EMPTY=") == {"EMPTY": ""}
    for bad in ("A", "=1", "A=1,B"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_variant(bad)


def test_spread_is_median_p90_p99() -> None:
    assert spread([float(v) for v in range(1, 101)]) == [51.0, 91.0, 100.0]
    assert spread([]) == [0.0, 0.0, 0.0]


def run(variant: dict[str, str], p50: float) -> dict[str, Any]:
    return {
        "variant": variant,
        "p50_ms": p50,
        "p99_ms": p50 * 2,
        "alone_p50_ms": 20.0,
        "idle_cores": 0.2,
        "host_speed_ms": 140.0,
    }


def test_the_summary_groups_alternating_runs_by_variant_in_run_order() -> None:
    wait = {"TICKETING_KAFKA_FETCH_MAX_WAIT_MS": "20"}
    lines = summary([run({}, 90.0), run(wait, 80.0), run({}, 95.0), run(wait, 70.0)])
    assert lines == [
        "(as it is): p50_ms 90.0, 95.0; p99_ms 180.0, 190.0; alone_p50_ms 20.0, 20.0; "
        "idle_cores 0.2, 0.2; host_speed_ms 140.0, 140.0",
        "TICKETING_KAFKA_FETCH_MAX_WAIT_MS=20: p50_ms 80.0, 70.0; p99_ms 160.0, 140.0; "
        "alone_p50_ms 20.0, 20.0; idle_cores 0.2, 0.2; host_speed_ms 140.0, 140.0",
    ]


def test_an_accept_summary_lists_throughput_and_cpu_per_booking() -> None:
    def accept(variant: dict[str, str], rate: float, cpu: int) -> dict[str, Any]:
        return {
            "scenario": "accept",
            "variant": variant,
            "accepted_per_second": rate,
            "p99_ms": 50.0,
            "cpu_us_per_booking_total": cpu,
            "host_speed_ms": 45.0,
        }

    switch = {"MY_SWITCH": "1"}
    lines = summary([accept({}, 1900.0, 930), accept(switch, 1950.0, 900)])
    assert lines == [
        "(as it is): accepted_per_second 1900.0; p99_ms 50.0; cpu_us_per_booking_total 930; "
        "host_speed_ms 45.0",
        "MY_SWITCH=1: accepted_per_second 1950.0; p99_ms 50.0; cpu_us_per_booking_total 900; "
        "host_speed_ms 45.0",
    ]
