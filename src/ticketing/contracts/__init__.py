"""Schemas that cross a service boundary (HTTP bodies other services consume, Kafka events).

Only plain data definitions live here: no I/O, no business rules, no service imports.
"""
