"""Alembic environment of the order database."""

from ticketing.shared.db.migrations import run_environment

run_environment("order")
