"""The event store's delivery columns (topic, message key, publication time), which make a
service's store its outbox (issue 18). Inventory publishes nothing: every event it stored is
internal and counts as delivered.

Resumable like 0002: whatever part of the columns an interrupted run left is dropped first.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ticketing.shared.db.migration_ops import add_event_store_delivery_v1

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _forget_an_interrupted_run()
    add_event_store_delivery_v1()


def downgrade() -> None:
    _forget_an_interrupted_run()


def _forget_an_interrupted_run() -> None:
    inspector = sa.inspect(op.get_bind())
    indexes = {index["name"] for index in inspector.get_indexes("event_store")}
    columns = {column["name"] for column in inspector.get_columns("event_store")}
    if "ix_event_store_published_at_position" in indexes:
        op.drop_index("ix_event_store_published_at_position", "event_store")
    for column in ("published_at", "message_key", "topic"):
        if column in columns:
            op.drop_column("event_store", column)
