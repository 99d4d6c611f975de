"""One format per process: structlog's own lines and the standard library's (uvicorn, aiokafka,
httpx, Litestar) come out rendered alike, secrets redacted, with no per-request library chatter.

Each case runs in a fresh interpreter: logging is configured once per process, and the test
reads what that process wrote to stderr, exactly as a service writes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

from ticketing.shared.logging import json_line

REPO = Path(__file__).resolve().parents[2]

# Logs from every source a service has, after the app is built the way ``ticketing serve``
# builds it (Litestar configures logging when an app is constructed).
EMIT = """
import logging
import warnings

import structlog
from litestar import Litestar

from ticketing.shared.app import create_http_app
from ticketing.shared.logging import configure_logging, reclaim_standard_library_logging
from ticketing.shared.settings import Settings

settings = Settings.from_env({"TICKETING_LOG_FORMAT": "json"})
configure_logging(settings, "probe")
create_http_app(service="probe", settings=settings, route_handlers=[], authenticate=False)
{after_build}
structlog.get_logger("ticketing.test").info("native line", token="native-secret")
logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
logging.getLogger("aiokafka.consumer.group_coordinator").warning(
    "Heartbeat failed", extra={"password": "extra-secret"}
)
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
logging.getLogger("httpx").info('HTTP Request: GET http://127.0.0.1/health/ready "200 OK"')
logging.getLogger("litestar").info("litestar line")
warnings.warn("old API", DeprecationWarning, stacklevel=1)
"""


def emitted(after_build: str = "") -> tuple[list[dict[str, Any]], str]:
    """The JSON lines a process with the service logging configuration wrote to stderr, and
    the raw stderr (every line must be JSON)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    env.pop("TICKETING_LOG_LEVEL", None)
    script = textwrap.dedent(EMIT).replace("{after_build}", after_build)
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\nstderr:\n{done.stderr}") from None
    return parsed, done.stderr


def by_event(records: list[dict[str, Any]], event: str) -> dict[str, Any]:
    found = [record for record in records if record.get("event") == event]
    assert len(found) == 1, f"{event!r} in {records}"
    return found[0]


def test_every_line_is_json_with_the_structlog_keys() -> None:
    records, _ = emitted()
    assert records
    for record in records:
        assert {"event", "level", "timestamp", "service"} <= record.keys(), record
        assert record["service"] == "probe"
    assert by_event(records, "native line")["level"] == "info"
    started = by_event(records, "Started server process [42]")
    assert started["level"] == "info"
    assert started["logger"] == "uvicorn.error"
    assert by_event(records, "Heartbeat failed")["level"] == "warning"
    assert by_event(records, "litestar line")["logger"] == "litestar"
    (warning,) = [record for record in records if "old API" in record["event"]]
    assert warning["logger"] == "py.warnings"


def test_standard_library_exceptions_keep_their_traceback() -> None:
    records, _ = emitted()
    failed = by_event(records, "Exception in ASGI application")
    assert failed["level"] == "error"
    assert "ZeroDivisionError" in failed["exception"]


def test_secrets_are_redacted_in_foreign_records_too() -> None:
    records, stderr = emitted()
    assert "native-secret" not in stderr
    assert "extra-secret" not in stderr
    assert by_event(records, "Heartbeat failed")["password"] == "[redacted]"
    assert by_event(records, "native line")["token"] == "[redacted]"


def test_httpx_does_not_log_each_request_at_info() -> None:
    _, stderr = emitted()
    assert "HTTP Request" not in stderr


def test_a_litestar_app_built_later_does_not_take_over_the_format() -> None:
    """booking builds a throwaway Litestar app at startup to render its OpenAPI document; one
    built with Litestar's default logging configuration replaces the root handler, and
    ``ticketing serve`` reclaims it once startup is over."""
    records, _ = emitted("Litestar(route_handlers=[])\nreclaim_standard_library_logging()")
    assert by_event(records, "Started server process [42]")["service"] == "probe"


def test_log_lines_are_json_whatever_the_values() -> None:
    line = json.loads(json_line({"event": "e", "id": uuid.UUID(int=1), "thing": object()}))
    assert line["id"] == "00000000-0000-0000-0000-000000000001"
    assert line["thing"].startswith("<object object")
    # What msgspec refuses (a lone surrogate) still makes a line.
    assert json.loads(json_line({"event": "\udc80"})) == {"event": "\udc80"}
