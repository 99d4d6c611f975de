"""Gateway service (built by a later issue)."""
