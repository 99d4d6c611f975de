"""ticketing: an async, event-driven ticket booking backend."""

__version__ = "0.1.0"
