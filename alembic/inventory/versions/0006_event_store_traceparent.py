"""The event store keeps the trace of the work that recorded each event (issue 22), so the
relay can publish it under that trace and a trace survives the outbox and a replay. Events
recorded before have no trace (NULL); each step is skipped when already done, so a run that
stopped halfway, either way, finishes when run again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from ticketing.shared.db.migration_ops import (
    add_event_store_traceparent_v1,
    drop_event_store_traceparent_v1,
)

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_event_store_traceparent_v1()


def downgrade() -> None:
    drop_event_store_traceparent_v1()
