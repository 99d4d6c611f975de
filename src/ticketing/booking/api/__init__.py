"""Booking's HTTP entrypoints: translate requests, delegate to the service layer."""
