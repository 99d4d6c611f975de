"""Alembic environment of the booking database."""

from ticketing.shared.db.migrations import run_environment

run_environment("booking")
