"""Shared plumbing: settings, logging, database, messaging, HTTP. No business rules, no services."""
