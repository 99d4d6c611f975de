"""Alembic environment of the inventory database."""

from ticketing.platform.migrations import run_environment

run_environment("inventory")
