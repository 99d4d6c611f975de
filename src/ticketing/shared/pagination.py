"""Opaque keyset-pagination cursors: the last id of a page, URL-safe."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from typing import Protocol, TypeVar

from ticketing.shared.errors import InvalidInput

CURSOR_PATTERN = r"^[A-Za-z0-9_-]{22}$"  # a UUID's 16 bytes, base64url without padding


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "cursor is not valid; pass the next_cursor of a previous page",
            errors=[{"field": "cursor", "message": "not a cursor this API issued"}],
        ) from None


class HasId(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


T = TypeVar("T", bound=HasId)


def page(items: Sequence[T], limit: int) -> tuple[list[T], str | None]:
    """Cut ``limit + 1`` fetched items to a page and the cursor of the next one (None: last)."""
    next_cursor = encode_cursor(items[limit - 1].id) if len(items) > limit else None
    return list(items[:limit]), next_cursor
