"""Database plumbing: one async engine per service database, created from settings.

Services use SQLAlchemy Core, not the ORM (the statements every booking passes through run on
the driver's cursor: :mod:`ticketing.shared.db.sql`), and READ COMMITTED: InnoDB's default
REPEATABLE READ takes gap locks that deadlock concurrent range updates. Deadlocks (1213) and
lock wait timeouts (1205) are retried by :func:`run_transaction`.

Connections are checked for life only after they sat idle in the pool (``PING_AFTER_IDLE``), not
on every checkout: under load the ping was a round trip per transaction, and a connection that
answered a moment ago is alive. One that died since (the server restarted) fails its statement;
SQLAlchemy then discards every pooled connection, consumers retry and HTTP callers get a 503.

A connection going back to the pool is rolled back (SQLAlchemy's reset on return), except right
after a transaction committed on it (:func:`retried`): it has nothing to undo, and the rollback
was one more round trip per transaction.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from ticketing.shared.settings import ServiceName, Settings

T = TypeVar("T")

RETRYABLE_MYSQL_ERRORS = frozenset({1205, 1213})
DUPLICATE_KEY = 1062
PING_AFTER_IDLE = 5.0  # seconds
COMMITTED = "ticketing.committed"  # set in a connection's info when its transaction committed
log = structlog.get_logger(__name__)


def create_engine(settings: Settings, service: ServiceName) -> AsyncEngine:
    """The engine of ``service``'s own database (``<prefix><service>``)."""
    # Looked up when called, so that tracing's instrumentation, installed at start, sees it.
    engine = sqlalchemy_asyncio.create_async_engine(
        settings.database_url(service),
        isolation_level="READ COMMITTED",
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=3600,
        pool_reset_on_return=None,  # done by _reset below
    )
    event.listen(engine.sync_engine.pool, "reset", _reset)
    event.listen(engine.sync_engine.pool, "checkin", _remember_checkin)
    event.listen(engine.sync_engine.pool, "checkout", _ping_if_idle)
    return engine


def _reset(dbapi_connection: Any, record: ConnectionPoolEntry, state: PoolResetState) -> None:
    committed = record.info.pop(COMMITTED, False)
    if committed or state.transaction_was_reset or state.terminate_only or not state.asyncio_safe:
        return  # nothing to undo, or nothing that may be done
    dbapi_connection.rollback()


def _remember_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
    """Ping a connection that sat in the pool for ``PING_AFTER_IDLE`` seconds or more; a dead
    one is replaced by a fresh connection (the pool retries the checkout)."""
    checked_in_at = record.info.get("checked_in_at")
    if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE:
        return
    try:
        dbapi_connection.ping(False)
    except Exception as error:
        raise DisconnectionError(f"pooled connection is dead: {error!r}") from error


def server_connect_args(settings: Settings) -> dict[str, Any]:
    """``TICKETING_MYSQL_URL`` as the keyword arguments of pymysql's and aiomysql's ``connect``,
    for what talks to the server without SQLAlchemy (a Unix socket named in the URL included)."""
    url = make_url(settings.mysql_url)
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "root",
        "password": url.password or "",
        "unix_socket": url.query.get("unix_socket"),
    }


def create_server_engine(settings: Settings) -> AsyncEngine:
    """An engine on the server itself (no database), for creating and dropping databases."""
    return sqlalchemy_asyncio.create_async_engine(settings.mysql_url, pool_size=1, max_overflow=0)


async def ensure_database(settings: Settings, service: ServiceName) -> bool:
    """Create ``service``'s database when missing; True when it was created."""
    name = settings.database_name(service)
    engine = create_server_engine(settings)
    try:
        async with engine.begin() as conn:
            exists = await conn.scalar(
                text("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = :n"),
                {"n": name},
            )
            if exists:
                return False
            await conn.execute(
                text(
                    f"CREATE DATABASE IF NOT EXISTS `{name}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
            )
            return True
    finally:
        await engine.dispose()


async def ping(engine: AsyncEngine) -> None:
    """Raise unless the database answers ``SELECT 1``."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def mysql_error_code(error: BaseException) -> int | None:
    """The MySQL error number behind a SQLAlchemy error, if any."""
    orig = getattr(error, "orig", None)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


CHECK_CONSTRAINT_FAILED = 4025


def unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database could not serve (down, restarting, or too busy: the
    pool's wait for a connection ran out), so nothing was done and a retry may succeed. A CHECK
    constraint that refused a write is an OperationalError too, but no retry changes it."""
    if isinstance(error, PoolTimeout):
        return True
    if isinstance(error, OperationalError):
        return mysql_error_code(error) != CHECK_CONSTRAINT_FAILED
    return isinstance(error, DBAPIError) and error.connection_invalidated


def is_duplicate_key(error: BaseException) -> bool:
    """The statement broke a primary or unique key (MySQL error 1062)."""
    return mysql_error_code(error) == DUPLICATE_KEY


async def run_transaction(
    engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]], *, attempts: int = 5
) -> T:
    """Run ``work`` in one transaction that SQLAlchemy begins and commits, retrying it whole on
    deadlock or lock wait timeout. (The hot paths use :func:`ticketing.shared.db.unit_of_work.
    in_unit_of_work`, which sends their writes with the ``COMMIT``.)"""

    async def in_transaction(conn: AsyncConnection) -> T:
        async with conn.begin():
            return await work(conn)

    return await retried(engine, in_transaction, attempts=attempts)


async def retried(
    engine: AsyncEngine, body: Callable[[AsyncConnection], Awaitable[T]], *, attempts: int = 5
) -> T:
    """Run ``body`` on a connection of its own, which must commit what it did, retrying it
    whole on deadlock or lock wait timeout. A ``body`` that raises leaves its connection
    uncommitted, and the pool rolls it back."""
    for attempt in range(1, attempts + 1):
        try:
            async with engine.connect() as conn:
                result = await body(conn)
                conn.info[COMMITTED] = True
                return result
        except DBAPIError as error:
            code = mysql_error_code(error)
            if code not in RETRYABLE_MYSQL_ERRORS or attempt == attempts:
                raise
            log.warning("transaction retried", mysql_error=code, attempt=attempt)
            await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 - jitter only
    raise AssertionError("unreachable")
