"""Alembic environment of the booking database."""

from ticketing.shared.migrations import run_environment

run_environment("booking")
