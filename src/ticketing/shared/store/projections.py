"""What every service's projection check and rebuild share: the report of a rebuild, and the
words for a row the tables and the events disagree on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Rebuilt:
    """How many rows of each of ``tables`` a rebuild wrote (inserted or corrected) and deleted,
    and the streams it could not fold (left as they are)."""

    tables: tuple[str, ...]
    written: dict[str, int] = field(init=False)
    deleted: dict[str, int] = field(init=False)
    broken: list[str] = field(default_factory=list)
    _broken_streams: set[uuid.UUID] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.written = dict.fromkeys(self.tables, 0)
        self.deleted = dict.fromkeys(self.tables, 0)

    def give_up(self, stream_id: uuid.UUID, problem: str) -> None:
        """Leave the rows of a stream that cannot be folded as they are, saying why (once)."""
        if stream_id not in self._broken_streams:
            self._broken_streams.add(stream_id)
            self.broken.append(problem)

    def gave_up(self, stream_id: uuid.UUID) -> bool:
        return stream_id in self._broken_streams

    def lines(self) -> list[str]:
        counts = [
            f"{table}: {self.written[table]} written, {self.deleted[table]} deleted"
            for table in self.tables
        ]
        return counts + [f"not rebuilt: {problem}" for problem in self.broken]


def differences(
    table: str, want: Mapping[uuid.UUID, Any], have: Mapping[uuid.UUID, Any]
) -> Iterator[str]:
    """Every row of ``table`` that the events (``want``) and the table (``have``) disagree on,
    in words."""
    for key in sorted(want.keys() | have.keys()):
        if key not in have:
            yield f"{table} {key}: missing; the events say {want[key]}"
        elif key not in want:
            yield f"{table} {key}: {have[key]} has no events"
        elif want[key] != have[key]:
            yield f"{table} {key}: the table holds {have[key]}, the events say {want[key]}"
