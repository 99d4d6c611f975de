"""`make bench` draws its results as pictures that docs/benchmarks.md embeds.

A run takes minutes and is not part of the test run, so a picture that no longer draws from a
run's figures would otherwise surface only at the next benchmark."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from benchmarks.plots import PICTURES, draw
from benchmarks.report import write_report
from PIL import Image

RUN = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic() -> dict[str, Any]:
    """A whole run (the committed one for the report's other sections) with made-up series."""
    results: dict[str, Any] = json.loads(RUN.read_text())
    results["accept"]["accepted_each_second"] = [700 + (k % 5) * 20 for k in range(30)]
    results["accept"]["confirmation_after"] = {
        "rate_per_second": 200,
        "bookings": 4000,
        "p50_ms": 83.0,
        "p99_ms": 193.8,
        "percentiles_ms": [40.0 + k * 1.5 for k in range(101)],
    }
    results["confirmation"]["percentiles_ms"] = [20.0 + k for k in range(101)]
    results["accept"]["cpu_us_per_booking"] = {"booking": 785, "gateway": 593, "mariadb": 469}
    results["confirmation"]["cpu_us_per_booking"] = {"booking": 900, "order": 400}
    return results


def png_size(path: Path) -> tuple[int, int]:
    """The width and height a PNG declares, after checking it is one Pillow can decode whole."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    with Image.open(path) as image:
        image.verify()  # reads every chunk and checks its CRC
    with Image.open(path) as image:
        image.load()  # decodes the pixels
        assert image.format == "PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_three_pictures_are_drawn_as_png_files(tmp_path: Path) -> None:
    drawn = draw(synthetic(), tmp_path / "img")
    assert (
        set(drawn)
        == set(PICTURES)
        == {
            "accept_throughput",
            "confirmation_latency",
            "cpu_per_booking",
        }
    )
    for key, path in drawn.items():
        assert path == tmp_path / "img" / PICTURES[key]
        assert png_size(path) == (700, 360)


def test_the_report_embeds_the_pictures_relative_to_itself(tmp_path: Path) -> None:
    results = synthetic()
    report = tmp_path / "benchmarks.md"
    write_report(results, report, draw(results, tmp_path / "img"))
    text = report.read_text()
    for name in PICTURES.values():
        assert text.count(f"(img/{name})") == 1
        assert (report.parent / "img" / name).is_file()
    # Each where its figures are: throughput in section 1, latency and CPU in section 2.
    first, second = text.split("## 2.")[0], text.split("## 2.")[1].split("## 3.")[0]
    assert f"(img/{PICTURES['accept_throughput']})" in first
    assert f"(img/{PICTURES['confirmation_latency']})" in second
    assert f"(img/{PICTURES['cpu_per_booking']})" in second


def test_a_run_without_a_pictures_figures_neither_draws_nor_embeds_it(tmp_path: Path) -> None:
    results = synthetic()
    del results["accept"]["accepted_each_second"]
    del results["confirmation"]["percentiles_ms"]
    del results["accept"]["confirmation_after"]["percentiles_ms"]
    drawn = draw(results, tmp_path / "img")
    assert set(drawn) == {"cpu_per_booking"}
    assert not (tmp_path / "img" / PICTURES["accept_throughput"]).exists()
    report = tmp_path / "benchmarks.md"
    write_report(results, report, drawn)
    text = report.read_text()
    assert text.count("![") == 1
    assert f"(img/{PICTURES['cpu_per_booking']})" in text


def test_a_latency_run_that_confirmed_nothing_still_draws_the_other(tmp_path: Path) -> None:
    """The latency axis is logarithmic, where a run with no confirmed booking has no point."""
    results = synthetic()
    results["confirmation"]["percentiles_ms"] = [0.0] * 101
    drawn = draw(results, tmp_path / "img")
    assert png_size(drawn["confirmation_latency"]) == (700, 360)
    results["accept"]["confirmation_after"]["percentiles_ms"] = [0.0] * 101
    assert "confirmation_latency" not in draw(results, tmp_path / "again")
