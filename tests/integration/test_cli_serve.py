"""``ticketing serve inventory`` as a real process: it serves, is ready, and stops on SIGTERM,
writing one log format (JSON) throughout, without a line per health probe."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx

from tests.harness.processes import free_port, json_lines
from ticketing.shared.settings import Settings


async def test_serve_answers_and_stops_cleanly_on_sigterm(databases: Settings) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TICKETING_DB_PREFIX": databases.db_prefix,
        "TICKETING_INVENTORY_PORT": str(port),
        "TICKETING_LOG_FORMAT": "json",
        "TICKETING_LOG_LEVEL": "INFO",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ticketing",
        "serve",
        "inventory",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):
                try:
                    ready = await client.get("/health/ready")
                    break
                except httpx.TransportError:
                    assert process.returncode is None, "the service exited early"
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the service never answered")
            assert ready.status_code == 200
            response = await client.get("/health/live", headers={"X-Request-ID": "probe"})
            assert response.headers["x-request-id"] == "probe"
            await client.get("/metrics", headers={"X-Request-ID": "cli-test"})
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it.
    assert process.returncode in (0, -signal.SIGTERM)
    records = json_lines(stderr)
    events = [record["event"] for record in records]
    assert "service stopped" in events
    # uvicorn's own lines, in the same format.
    assert any(str(event).startswith("Started server process") for event in events), events
    assert all(record["service"] == "inventory" for record in records)
    requests = [record for record in records if record["event"] == "request"]
    assert [record["route"] for record in requests] == ["/metrics"]
    assert requests[0]["correlation_id"] == "cli-test"
