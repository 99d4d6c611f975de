"""Alembic environment of the inventory database."""

from ticketing.shared.db.migrations import run_environment

run_environment("inventory")
