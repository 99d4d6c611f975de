"""Time-ordered UUIDs (version 7, RFC 9562): new rows land at the end of the primary key index."""

from __future__ import annotations

import os
import threading
import time
import uuid

# Random bits come from the OS a page at a time, so that not every id costs a system call. Each
# thread has its own page, and a forked child starts without one, so no two ids ever share their
# random bits.
_PAGE_BYTES = 4096
_ID_RANDOM_BYTES = 10


class _RandomPages(threading.local):
    def __init__(self) -> None:
        self.page = b""
        self.offset = 0

    def take(self) -> bytes:
        if self.offset + _ID_RANDOM_BYTES > len(self.page):
            self.page = os.urandom(_PAGE_BYTES)
            self.offset = 0
        start = self.offset
        self.offset = start + _ID_RANDOM_BYTES
        return self.page[start : start + _ID_RANDOM_BYTES]


_random = _RandomPages()


def _forget_pages() -> None:
    global _random  # noqa: PLW0603 - a forked child must never reuse the parent's random bits
    _random = _RandomPages()


os.register_at_fork(after_in_child=_forget_pages)


def new_id() -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then random bits, with version and variant set."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80
    value |= int.from_bytes(_random.take(), "big")
    value &= ~(0xF << 76)
    value |= 0x7 << 76  # version 7
    value &= ~(0x3 << 62)
    value |= 0x2 << 62  # RFC 9562 variant
    return uuid.UUID(int=value)
