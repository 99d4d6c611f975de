"""Opaque keyset-pagination cursors: the last id (or stream version) of a page, URL-safe."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from typing import Protocol, TypeVar

from ticketing.shared.errors import InvalidInput

CURSOR_PATTERN = r"^[A-Za-z0-9_-]{22}$"  # a UUID's 16 bytes, base64url without padding
VERSION_CURSOR_PATTERN = r"^[A-Za-z0-9_-]{6}$"  # a version's 4 bytes, base64url without padding


def encode_cursor(last_id: uuid.UUID) -> str:
    return _encode(last_id.bytes)


def decode_cursor(cursor: str) -> uuid.UUID:
    return uuid.UUID(bytes=_decode(cursor, 16))


def encode_version_cursor(version: int) -> str:
    """The cursor of the page after ``version`` of a stream."""
    return _encode(version.to_bytes(4, "big"))


def decode_version_cursor(cursor: str) -> int:
    return int.from_bytes(_decode(cursor, 4), "big")


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, size: int) -> bytes:
    """The ``size`` bytes a cursor of ours holds, or a 400 problem for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise InvalidInput(
            "cursor is not valid; pass the next_cursor of a previous page",
            errors=[{"field": "cursor", "message": "not a cursor this API issued"}],
        )
    return raw


class HasId(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


T = TypeVar("T", bound=HasId)


def page(items: Sequence[T], limit: int) -> tuple[list[T], str | None]:
    """Cut ``limit + 1`` fetched items to a page and the cursor of the next one (None: last)."""
    next_cursor = encode_cursor(items[limit - 1].id) if len(items) > limit else None
    return list(items[:limit]), next_cursor
