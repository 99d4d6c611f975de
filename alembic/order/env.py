"""Alembic environment of the order database."""

from ticketing.shared.migrations import run_environment

run_environment("order")
