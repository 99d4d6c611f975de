"""Events as stored: JSON under their class name and ``SCHEMA_VERSION``, brought up to the current
shape on read by upcasters, one version at a time, so old rows never need rewriting."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    """A stored row's event type (or schema version) that this code cannot read."""


class EventCodec:
    """The event types of one service, with the upcasters that bring an older stored shape
    to the next version: ``upcasters[(event_type, n)]`` turns a version-n payload into n+1."""

    def __init__(
        self,
        types: Iterable[type[Any]],
        upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
    ) -> None:
        self._types = {cls.__name__: cls for cls in types}
        self._upcasters = dict(upcasters or {})
        self._encoder = msgspec.json.Encoder()

    @property
    def types(self) -> Mapping[str, type[Any]]:
        return self._types

    def encode(self, event: Any) -> str:
        if self._types.get(type(event).__name__) is not type(event):
            raise UnknownEventType(f"{type(event).__name__} is not an event type of this store")
        return self._encoder.encode(event).decode()

    def decode(self, event_type: str, schema_version: int, payload: str | bytes) -> Any:
        cls = self._types.get(event_type)
        if cls is None:
            raise UnknownEventType(f"unknown event type {event_type!r}")
        current: int = cls.SCHEMA_VERSION
        if schema_version == current:
            return msgspec.json.decode(payload, type=cls)
        if schema_version > current:
            raise UnknownEventType(
                f"{event_type} v{schema_version} is newer than this code (v{current})"
            )
        shape: dict[str, Any] = msgspec.json.decode(payload)
        for version in range(schema_version, current):
            upcast = self._upcasters.get((event_type, version))
            if upcast is None:
                raise UnknownEventType(f"no upcaster for {event_type} v{version}")
            shape = upcast(shape)
        return msgspec.convert(shape, type=cls)
