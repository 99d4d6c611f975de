"""Inventory service: venues, events and the authoritative ticket capacity."""
