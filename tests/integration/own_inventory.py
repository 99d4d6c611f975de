"""An inventory database of a test's own, and the JSON Lines an export writes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.harness.databases import drop_databases
from ticketing.shared.db.migrations import upgrade
from ticketing.shared.settings import Settings


@pytest.fixture
async def settings(base_settings: Settings) -> AsyncIterator[Settings]:
    settings = dataclasses.replace(
        base_settings, db_prefix=f"ticketing_events_{uuid.uuid4().hex[:8]}_"
    )
    await asyncio.to_thread(upgrade, settings, "inventory")
    try:
        yield settings
    finally:
        await drop_databases(settings)


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]
