"""A request body read straight off the ASGI channel, within the size limit.

For the few handlers that run below a framework's request object (the gateway's proxy,
booking's hot endpoint): the body is small, so it is read whole.
"""

from __future__ import annotations

from litestar.types import Receive

from ticketing.shared.errors import InvalidInput, PayloadTooLarge


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; PayloadTooLarge past ``limit`` bytes, InvalidInput when the
    client goes away before it sent all of it (nothing of a partial body is ever used)."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client went away before sending the whole body")
        body = message.get("body", b"")
        chunk = body if isinstance(body, bytes) else b""
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
