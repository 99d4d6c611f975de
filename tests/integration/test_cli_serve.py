"""``ticketing serve inventory`` as a real process: it serves, is ready, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx

from tests.harness import free_port
from ticketing.shared.settings import Settings


async def test_serve_answers_and_stops_cleanly_on_sigterm(databases: Settings) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TICKETING_DB_PREFIX": databases.db_prefix,
        "TICKETING_INVENTORY_PORT": str(port),
        "TICKETING_LOG_FORMAT": "json",
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
            response = await client.get("/health/live", headers={"X-Request-ID": "cli-test"})
            assert response.headers["x-request-id"] == "cli-test"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it.
    assert process.returncode in (0, -signal.SIGTERM)
    assert b'"event": "service stopped"' in stderr
    assert b'"correlation_id": "cli-test"' in stderr
    assert b'"service": "inventory"' in stderr
