"""``ticketing`` run as a real process against databases named with a prefix of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, prefix: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TICKETING_DB_PREFIX": prefix}
    return subprocess.run(
        [sys.executable, "-m", "ticketing", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
