"""The booking lifecycle (issue 19): a booking row keeps whether it is a hold, when the hold
expires, whether a cancel waits for the saga's answer and which client requested it; an index
lets every replica find the holds past their time without scanning the table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def columns() -> tuple[sa.Column[Any], ...]:
    """The new columns (made anew each time: a column belongs to one table)."""
    return (
        sa.Column("hold", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("expires_at", DATETIME(fsp=6), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("requested_by", sa.Text(), nullable=True),
    )


INDEX = "ix_bookings_status_expires_at"


def upgrade() -> None:
    # Each step only when not done yet: the server commits each DDL statement, so an upgrade
    # that stopped halfway (or ran before its revision was recorded) is run again whole.
    inspector = sa.inspect(op.get_bind())
    present = {column["name"] for column in inspector.get_columns("bookings")}
    for column in columns():
        if column.name not in present:
            op.add_column("bookings", column)
    if INDEX not in {index["name"] for index in inspector.get_indexes("bookings")}:
        op.create_index(INDEX, "bookings", ["status", "expires_at"])


def downgrade() -> None:
    # Guarded like the upgrade: a downgrade that stopped halfway finishes when run again.
    inspector = sa.inspect(op.get_bind())
    if INDEX in {index["name"] for index in inspector.get_indexes("bookings")}:
        op.drop_index(INDEX, table_name="bookings")
    present = {column["name"] for column in inspector.get_columns("bookings")}
    for column in reversed(columns()):
        if column.name in present:
            op.drop_column("bookings", column.name)
