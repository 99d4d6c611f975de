"""Settings read once from ``TICKETING_`` variables: the documented defaults, conversion, and
values no service could run with refused at start, naming the variable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ticketing.shared.settings import Settings, SettingsError


def test_defaults_match_the_documented_ones() -> None:
    settings = Settings.from_env({})
    assert settings.mysql_url == "mysql+aiomysql://root@127.0.0.1:3306"
    assert settings.database_name("inventory") == "ticketing_inventory"
    assert [settings.bind(s)[1] for s in ("inventory", "booking", "order", "gateway")] == [
        8081,
        8082,
        8083,
        8090,
    ]


def test_environment_values_are_converted() -> None:
    settings = Settings.from_env(
        {
            "TICKETING_INVENTORY_PORT": "9001",
            "TICKETING_DB_PREFIX": "t1_",
            "TICKETING_KAFKA_ENABLE_IDEMPOTENCE": "true",
            "TICKETING_MYSQL_URL": "mysql+aiomysql://u:p@db:3306?charset=utf8mb4",
        }
    )
    assert settings.inventory_port == 9001
    assert settings.kafka_enable_idempotence is True
    assert (
        settings.database_url("inventory")
        == "mysql+aiomysql://u:p@db:3306/t1_inventory?charset=utf8mb4"
    )


@pytest.mark.parametrize(
    "environ",
    [
        {"TICKETING_INVENTORY_PORT": "eighty"},
        {"TICKETING_KAFKA_ENABLE_IDEMPOTENCE": "maybe"},
        {"TICKETING_DB_PREFIX": "x`; DROP"},
        {"TICKETING_MYSQL_URL": "mysql+aiomysql://root@127.0.0.1:3306/somedb"},
        {"TICKETING_LOG_FORMAT": "xml"},
        {"TICKETING_CONSUMER_BATCH_SIZE": "0"},
        {"TICKETING_RELAY_BATCH_SIZE": "-1"},
        {"TICKETING_KAFKA_PARTITIONS": "0"},
    ],
)
def test_unusable_values_fail_with_the_variable_named(environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="TICKETING_"):
        Settings.from_env(environ)


@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "1e12"])
@pytest.mark.parametrize("name", ["TICKETING_HOLD_SECONDS", "TICKETING_HOLD_SWEEP_SECONDS"])
def test_a_hold_setting_that_is_no_usable_time_is_refused_at_start(name: str, value: str) -> None:
    """NaN passes ``<= 0`` and infinity is above 0, and a hold's ``expires_at`` is settled time +
    the setting: the booking service would then fail at start (``timedelta`` of NaN or infinity),
    or, for a huge value, on every hold the saga confirms (past the year 9999), leaving those
    bookings PENDING."""
    try:
        settings = Settings.from_env({name: value})
    except SettingsError:
        return
    # Accepted: then a hold settled now must get its expiry.
    hold = timedelta(seconds=settings.hold_seconds)
    sweep = timedelta(seconds=settings.hold_sweep_seconds)
    assert datetime.now(UTC) + hold > datetime.now(UTC)
    assert sweep > timedelta(0)
