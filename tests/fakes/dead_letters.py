"""A dead-letter publisher that keeps what it is handed, standing in for the broker's."""

from __future__ import annotations

from typing import Any


class DeadLetters:
    def __init__(self) -> None:
        self.published: list[bytes] = []

    async def publish(self, value: bytes, topic: str, **_: Any) -> None:
        self.published.append(value)
