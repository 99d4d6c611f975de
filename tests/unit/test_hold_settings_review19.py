"""Review of issue 19: the hold's settings are refused unless they are a usable time. NaN passes
``<= 0`` and infinity is above 0, and a hold's ``expires_at`` is settled time + the setting:
the booking service then fails at start (``timedelta`` of NaN or infinity), or, for a huge
value, on every hold the saga confirms (past the year 9999), leaving those bookings PENDING."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ticketing.shared.settings import Settings, SettingsError


@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "1e12"])
@pytest.mark.parametrize("name", ["TICKETING_HOLD_SECONDS", "TICKETING_HOLD_SWEEP_SECONDS"])
def test_a_hold_setting_that_is_no_usable_time_is_refused_at_start(name: str, value: str) -> None:
    try:
        settings = Settings.from_env({name: value})
    except SettingsError:
        return
    # Accepted: then a hold settled now must get its expiry.
    hold = timedelta(seconds=settings.hold_seconds)
    sweep = timedelta(seconds=settings.hold_sweep_seconds)
    assert datetime.now(UTC) + hold > datetime.now(UTC)
    assert sweep > timedelta(0)
