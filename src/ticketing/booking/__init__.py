"""Booking service (built by a later issue)."""
