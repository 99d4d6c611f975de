"""Where a service reaches another's replicas: one address or a comma-separated list."""

from __future__ import annotations

import pytest

from ticketing.shared.settings import Settings, SettingsError


def test_a_list_of_addresses_names_each_replica() -> None:
    settings = Settings.from_env(
        {"TICKETING_INVENTORY_URL": " http://a:8081/, http://b:8081 ,,http://c:8081"}
    )
    assert settings.base_urls("inventory") == ["http://a:8081", "http://b:8081", "http://c:8081"]
    assert settings.base_url("inventory") == "http://a:8081"


def test_without_a_setting_the_bind_address_is_the_one_replica() -> None:
    settings = Settings.from_env(
        {"TICKETING_BOOKING_HOST": "0.0.0.0", "TICKETING_BOOKING_PORT": "9"}
    )
    assert settings.base_urls("booking") == ["http://127.0.0.1:9"]


@pytest.mark.parametrize(
    "value",
    [
        "inventory:8081",
        "http://a:1;http://b:2",
        "http://a, ftp://b",
        "http://a/?x=1",
        "http://a#top",
        " , ",
    ],
)
def test_an_address_that_is_not_http_is_refused_at_start(value: str) -> None:
    with pytest.raises(SettingsError, match="TICKETING_INVENTORY_URL"):
        Settings.from_env({"TICKETING_INVENTORY_URL": value})
