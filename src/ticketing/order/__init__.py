"""Order service (built by a later issue)."""
