"""Idempotency keys per client, compared byte for byte, with the token of the request that
holds each.

The key column was a case-insensitive ``VARCHAR`` (``abc`` and ``ABC`` were one key, and so were
``abc`` and ``abc ``), shared by every client; a retry that took over a key in flight could not
be told from the request it took it from. Now the primary key is (``client``, the SHA-256 of
the token's client id, and ``idem_key``), both binary strings, and ``claim`` holds the token of
the request that holds the key. The new table is built beside the old one and swapped in with
one ``RENAME TABLE``, so a failed upgrade leaves the old table in place.

Existing rows are deleted: they name no client, so no client's key can be found among them. A
request retried across the upgrade with a key it sent before is therefore taken as new; keys are
kept ``TICKETING_IDEMPOTENCY_TTL_HOURS`` (24) hours anyway, and the upgrade is run with booking
stopped (the old code cannot write the new table, nor the new code the old one). The downgrade
deletes them too: keys of two clients could collide in the old primary key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME, VARCHAR

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys_new",
        # CHARACTER SET binary: the server makes these VARBINARY, compared byte for byte.
        sa.Column("client", VARCHAR(64, charset="binary"), primary_key=True),
        sa.Column("idem_key", VARCHAR(510, charset="binary"), primary_key=True),
        sa.Column("claim", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("booking_id", sa.Uuid(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", DATETIME(fsp=6), nullable=False),
        sa.Index("ix_idempotency_keys_created_at", "created_at"),
        mysql_engine="InnoDB",
    )
    _swap()


def downgrade() -> None:
    op.create_table(
        "idempotency_keys_new",
        sa.Column("idem_key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("booking_id", sa.Uuid(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", DATETIME(fsp=6), nullable=False),
        sa.Index("ix_idempotency_keys_created_at", "created_at"),
        mysql_engine="InnoDB",
    )
    _swap()


def _swap() -> None:
    """Put the new table in place of the old one in one atomic rename, then drop the old."""
    op.execute(
        "RENAME TABLE idempotency_keys TO idempotency_keys_old, "
        "idempotency_keys_new TO idempotency_keys"
    )
    op.drop_table("idempotency_keys_old")
