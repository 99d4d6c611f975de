"""The disk's flushes, timed beside a run: MariaDB's commits wait on them."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Any

from benchmarks.stack import percentile


class FsyncProbe:
    """Times a 512-byte write and ``fdatasync`` every 50 ms, in a thread, while a run goes on.

    MariaDB commits with a flush of its log (``innodb_flush_log_at_trx_commit=1``), and every
    booking passes through several commits: a disk whose flush stalls holds every commit behind
    it, whatever the code does. The probe's file is a temporary one; ``same_disk`` tells whether
    it is on the device that holds MariaDB's data directory.
    """

    def __init__(self, mariadb_datadir: str, interval: float = 0.05) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fsync-probe", daemon=True)
        self._seconds: list[float] = []
        directory = tempfile.gettempdir()
        try:
            self.same_disk = os.stat(directory).st_dev == os.stat(mariadb_datadir).st_dev
        except OSError:
            self.same_disk = False
        self._directory = directory

    def __enter__(self) -> FsyncProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with tempfile.TemporaryFile(dir=self._directory) as file:
            while not self._stop.wait(self._interval):
                file.write(b"x" * 512)
                file.flush()
                started = time.perf_counter()
                os.fdatasync(file.fileno())
                self._seconds.append(time.perf_counter() - started)

    @property
    def flushes(self) -> int:
        return len(self._seconds)

    @property
    def seconds(self) -> list[float]:
        """How long each flush took so far, in seconds."""
        return list(self._seconds)

    def summary(self) -> dict[str, Any]:
        return flush_summary(self.seconds, same_disk=self.same_disk)


def flush_summary(seconds: list[float], *, same_disk: bool) -> dict[str, Any]:
    """The flushes' p50, p99 and max in ms, all rounded to the same places: rounded to different
    places, a p50 could read above the max it is never above."""
    ms = [value * 1000 for value in seconds]
    return {
        "flushes": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms, default=0.0), 2),
        "over_50_ms": sum(1 for value in ms if value > 50),
        "same_disk_as_mariadb": same_disk,
    }
