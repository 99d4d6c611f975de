"""Status push: how soon a client holds a booking's outcome, by long-poll and by polling."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from benchmarks.client import LeanClient, api, at_fixed_rate, sale
from benchmarks.stack import percentile
from tests.e2e.devprocess import DevProcess
from ticketing.shared.http.client import TRANSPORT_ERRORS


async def status_push_latency(dev: DevProcess, rate: float, seconds: float) -> dict[str, Any]:
    """``rate`` bookings/s for ``seconds``; every twentieth is followed to its outcome as a
    client would, alternately by a long-poll (``?wait=``) and by a GET every 10 ms: the time
    from sending the POST to holding the outcome, each way."""
    async with await api(dev) as client:
        customer_id, event_id = await sale(client, 1_000_000)
        token = str(client.headers["Authorization"])
    body = json.dumps({"customer_id": customer_id, "event_id": event_id, "ticket_count": 1})
    lean = LeanClient(dev.gateway, token, connections=200)
    seen: dict[str, list[float]] = {"long_poll": [], "poll_10ms": []}
    errors = 0

    async def one(index: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            status, content = await lean.post("/api/v1/bookings", body.encode())
            if status != 202 or index % 20:
                errors += status != 202
                return
            path = f"/api/v1/bookings/{json.loads(content)['id']}"
            way = "long_poll" if index % 40 == 0 else "poll_10ms"
            while True:
                params = {"wait": "30"} if way == "long_poll" else None
                status, content = await lean.get(path, params)
                if status == 200 and json.loads(content)["status"] != "PENDING":
                    break
                if status != 200:
                    errors += 1
                    return
                if way == "poll_10ms":
                    await asyncio.sleep(0.01)
            seen[way].append((time.perf_counter() - started) * 1000)
        except TRANSPORT_ERRORS:
            errors += 1

    await at_fixed_rate(rate, seconds, one, lean)
    return {
        "rate_per_second": rate,
        "seconds": seconds,
        "errors": errors,
        **{
            way: {
                "awaited": len(values),
                "p50_ms": round(percentile(values, 0.50), 1),
                "p99_ms": round(percentile(values, 0.99), 1),
            }
            for way, values in seen.items()
        },
    }
