"""How much memory each service replica holds (RSS), read from /proc."""

from __future__ import annotations

from pathlib import Path

from benchmarks.stack import replicas
from tests.e2e.devprocess import DevProcess


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def footprint(dev: DevProcess) -> dict[str, float]:
    return {name: round(rss_mb(dev.child(needle)), 1) for name, needle in replicas(dev).items()}
