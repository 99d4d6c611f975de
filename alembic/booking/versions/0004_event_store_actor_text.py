"""The event store's ``actor`` becomes text of any length: it is the token's client id, which
has no limit of its own (a client with a longer id could record no event).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from ticketing.shared.db.migration_ops import (
    narrow_event_store_actor_v1,
    widen_event_store_actor_v1,
)

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    widen_event_store_actor_v1()


def downgrade() -> None:
    narrow_event_store_actor_v1()
