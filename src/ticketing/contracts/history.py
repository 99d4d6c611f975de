"""What the history endpoints serve: the recorded events of one aggregate's stream."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class HistoryEntry(msgspec.Struct):
    """One recorded event of a stream: what happened, when, and who caused it."""

    version: Annotated[int, msgspec.Meta(description="Position in the stream, from 1")]
    type: Annotated[
        str,
        msgspec.Meta(
            description="What happened, as a fact in the past tense",
            examples=["SeatsReserved", "BookingConfirmed"],
        ),
    ]
    recorded_at: datetime
    actor: Annotated[
        str,
        msgspec.Meta(
            description="The client whose token caused it, or the service that acted on a message"
        ),
    ]
    correlation_id: str | None
    causation_id: str | None
    data: Annotated[dict[str, Any], msgspec.Meta(description="The event's fields")]
