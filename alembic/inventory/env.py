"""Alembic environment of the inventory database."""

from ticketing.shared.migrations import run_environment

run_environment("inventory")
