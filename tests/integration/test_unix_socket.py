"""``TICKETING_MYSQL_URL`` may name the server's Unix socket (``?unix_socket=...``): the
services' engines and ``ticketing dev``'s database check both connect through it."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from ticketing.cli.dev_infra import DevStackError, check_database
from ticketing.shared.db.engine import create_engine, create_server_engine
from ticketing.shared.settings import Settings

# A TCP client shows as host:port in the process list, a socket client as plain localhost.
CLIENT_HOST = text("SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()")


def over_socket(settings: Settings, path: str) -> Settings:
    url = make_url(settings.mysql_url).set(host="localhost", port=None, query={"unix_socket": path})
    return dataclasses.replace(settings, mysql_url=url.render_as_string(hide_password=False))


async def server_socket(settings: Settings) -> str:
    engine = create_server_engine(settings)
    try:
        async with engine.connect() as conn:
            path = await conn.scalar(text("SELECT @@socket"))
    finally:
        await engine.dispose()
    assert isinstance(path, str)
    return path


async def test_a_socket_url_connects_through_the_socket(databases: Settings) -> None:
    settings = over_socket(databases, await server_socket(databases))
    engine = create_engine(settings, "booking")
    try:
        async with engine.connect() as conn:
            host = await conn.scalar(CLIENT_HOST)
            bookings = await conn.scalar(text("SELECT COUNT(*) FROM bookings"))
    finally:
        await engine.dispose()
    assert host == "localhost"
    assert bookings is not None
    check_database(settings)  # raises when it cannot connect


async def test_the_database_check_names_a_socket_that_is_not_there(
    databases: Settings,
) -> None:
    settings = over_socket(databases, "/nonexistent/mysqld.sock")
    with pytest.raises(DevStackError, match="no MySQL/MariaDB answers"):
        check_database(settings)
