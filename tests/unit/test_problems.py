"""Problem details name the field a validation error is about."""

from __future__ import annotations

from ticketing.shared.http.problems import _field_errors


def test_validation_errors_name_the_field() -> None:
    errors = _field_errors([{"message": "Expected `int` >= 1 - at `$.total_capacity`"}])
    assert errors == [
        {"field": "total_capacity", "message": "Expected `int` >= 1", "source": "body"}
    ]
