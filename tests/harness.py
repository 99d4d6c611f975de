"""Real infrastructure for the tests: a MySQL-compatible server, a Kafka-protocol broker and
HTTP services on free loopback ports. Everything started here is stopped here."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from alembic.script import ScriptDirectory
from litestar import Litestar
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.cli.dev_infra import tansu_binary
from ticketing.cli.supervisor import die_with_parent
from ticketing.shared import sql
from ticketing.shared.consumer import Received
from ticketing.shared.db import create_server_engine
from ticketing.shared.migrations import alembic_root, upgrade
from ticketing.shared.serving import CoalescingHttpProtocol
from ticketing.shared.settings import ServiceName, Settings
from ticketing.shared.unit_of_work import UnitOfWork

_handed_out: set[int] = set()


def free_port() -> int:
    """A port free on loopback now and never handed out before by this process: the kernel may
    give a just-released port again, and two services of one stack were once given the same."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


@contextlib.contextmanager
def kafka_broker(port: int | None = None) -> Iterator[str]:
    """``TICKETING_TEST_KAFKA_BOOTSTRAP`` when set (and no port asked); else a Tansu broker on
    ``port`` or a free one."""
    external = os.environ.get("TICKETING_TEST_KAFKA_BOOTSTRAP")
    if external and port is None:
        yield external
        return
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]
    with child_process(argv, port, env={**os.environ, "RUST_LOG": "warn"}):
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def child_process(
    argv: list[str], port: int, env: dict[str, str] | None = None, timeout: float = 20
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` until the block ends, once it listens on ``port``; never leave it behind."""
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
    )
    try:
        wait_for_port("127.0.0.1", port, timeout, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def json_lines(stderr: bytes) -> list[dict[str, Any]]:
    """Every line of ``stderr`` as JSON (a line in another format fails the test)."""
    records = []
    for line in stderr.decode().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return records


def head_of(service: ServiceName) -> str:
    """The newest revision of ``service``'s migrations: where an upgrade to head stops, named
    without a number a new migration would have to change here."""
    head = ScriptDirectory(str(alembic_root() / service)).get_current_head()
    assert head is not None
    return head


@contextlib.asynccontextmanager
async def own_databases(*services: ServiceName, revision: str = "head") -> AsyncIterator[Settings]:
    """Settings naming databases of the caller's own for ``services``, migrated to ``revision``
    (no relay or consumer of a running stack touches them); dropped afterwards."""
    settings = dataclasses.replace(
        Settings.from_env(), db_prefix=f"ticketing_own_{uuid.uuid4().hex[:8]}_"
    )
    try:
        for service in services:
            await asyncio.to_thread(upgrade, settings, service, revision)
        yield settings
    finally:
        await drop_databases(settings)


async def drop_databases(settings: Settings) -> None:
    """Drop every database named with this run's prefix."""
    engine = create_server_engine(settings)
    try:
        async with engine.begin() as conn:
            rows = await conn.execute(
                text(
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :p"
                ),
                {"p": settings.db_prefix.replace("_", r"\_") + "%"},
            )
            for (name,) in rows.all():
                await conn.execute(text(f"DROP DATABASE `{name}`"))
    finally:
        await engine.dispose()


async def answer_lifespan(receive: Any, send: Any) -> None:
    """The lifespan protocol of a bare ASGI test app: nothing to start or stop."""
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


@contextlib.asynccontextmanager
async def serve(app: Litestar, port: int | None = None) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on ``port`` (default: a free one) on loopback, in this event
    loop; yield its URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http=CoalescingHttpProtocol,  # as ``ticketing serve`` runs every service
        timeout_graceful_shutdown=2,  # open streams and waits end at a stop
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def until_ready(url: str, seconds: float = 60) -> httpx.Response:
    """Poll ``url``'s ``/health/ready`` until it answers 200; that answer."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client, asyncio.timeout(seconds):
        while True:
            ready = await client.get("/health/ready")
            if ready.status_code == 200:
                return ready
            await asyncio.sleep(0.02)


async def create_topics(bootstrap: str, partitions: int, *names: str) -> None:
    """Create topics with ``partitions`` partitions (ignored when they exist)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for name in names:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(name, partitions, replication_factor=1)])
    finally:
        await admin.close()


async def group_members(bootstrap: str, group: str) -> int:
    """How many members consumer group ``group`` has once its rebalance is over (0 while one
    is going on, or before anyone joined)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    _, _, state, _, _, members = response.groups[0]
    return len(members) if state == "Stable" else 0


async def topic_partitions(bootstrap: str, *topics: str) -> dict[str, int]:
    """How many partitions each of ``topics`` has."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return {topic: len(consumer.partitions_for_topic(topic) or ()) for topic in topics}
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[Any]:
    """Read ``count`` records of ``topic`` from the beginning (no consumer group)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 1) * 1000))
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


REPO = Path(__file__).resolve().parents[1]
DEV_IDP = REPO / "deploy" / "dev-idp"
DEV_CLIENTS = {
    "admin": ("ticketing-admin", "ticketing-admin-secret"),
    "client": ("ticketing-client", "ticketing-client-secret"),
    "partner": ("ticketing-partner", "ticketing-partner-secret"),
    "order": ("order-service", "order-service-secret"),
}


@contextlib.contextmanager
def dev_idp(port: int | None = None) -> Iterator[str]:
    """The development OIDC server (deploy/dev-idp) on a free port; yields its issuer URL."""
    if not (DEV_IDP / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("run `npm ci --prefix deploy/dev-idp` first (make test does)")
    port = port or free_port()
    process = subprocess.Popen(
        ["node", str(DEV_IDP / "server.mjs"), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
    )
    try:
        wait_for_port("127.0.0.1", port, 20, process)
        yield f"http://127.0.0.1:{port}/realms/ticketing"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fetch_token(issuer: str, client: str, scope: str | None = None) -> str:
    """An access token for one of the dev clients, by the client-credentials grant."""
    import httpx

    client_id, secret = DEV_CLIENTS[client]
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    response = httpx.post(
        f"{issuer}/protocol/openid-connect/token", data=data, auth=(client_id, secret), timeout=10
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def chromium_binary() -> str:
    for candidate in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(candidate)
        if found:
            return found
    raise RuntimeError("Chromium is needed for the docs test: apt-get install chromium")


async def render_in_chromium(url: str, budget_ms: int = 15000) -> str:
    """The DOM of ``url`` after its scripts ran, from headless Chromium (loopback only)."""
    import tempfile

    with tempfile.TemporaryDirectory() as profile:
        process = await asyncio.create_subprocess_exec(
            chromium_binary(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    return out.decode("utf-8", "replace")


def _mysql_port(settings: Settings) -> int:
    from sqlalchemy.engine import make_url

    url = make_url(settings.mysql_url)
    if url.host not in (None, "127.0.0.1", "localhost"):
        raise RuntimeError("the database restart scenario needs the local MariaDB")
    return url.port or 3306


async def restart_local_mariadb(settings: Settings, down_seconds: float) -> None:
    """Stop the local MariaDB, keep it down for ``down_seconds``, start it again."""
    port = _mysql_port(settings)
    admin = shutil.which("mariadb-admin") or shutil.which("mysqladmin")
    daemon = shutil.which("mariadbd") or shutil.which("/usr/sbin/mariadbd")
    starter = shutil.which("start-stop-daemon")
    if admin is None or starter is None or daemon is None:
        raise RuntimeError("the database restart scenario needs mariadb-admin and mariadbd")
    stop = await asyncio.create_subprocess_exec(
        admin, "-uroot", "--protocol=tcp", f"-P{port}", "shutdown"
    )
    await stop.wait()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while await asyncio.to_thread(port_open, port) and loop.time() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(down_seconds)
    start = await asyncio.create_subprocess_exec(
        starter, "--start", "--oknodo", "--background", "--exec", daemon
    )
    await start.wait()
    while not await asyncio.to_thread(port_open, port):
        if loop.time() > deadline + down_seconds:
            raise RuntimeError("MariaDB did not come back")
        await asyncio.sleep(0.2)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.3):
        return True
    return False


async def as_the_runner_does(
    handle: Callable[[Sequence[Received]], Awaitable[None]], received: Sequence[Received]
) -> None:
    """Hand ``received`` to a consumer's handler as its runner does: as one batch, and when
    that fails, each message alone (the runner's retries and dead letters left out)."""
    try:
        await handle(received)
    except Exception:
        if len(received) == 1:
            raise
        for item in received:
            await handle([item])


async def sent_uncommitted(conn: AsyncConnection, record: Callable[[UnitOfWork], object]) -> None:
    """Send the writes ``record`` queues in a unit of work on ``conn`` without committing them:
    a transaction held open, as a slow writer's is."""
    uow = UnitOfWork(conn)
    record(uow)
    for statement in uow._writes:
        await sql.run(conn, statement)


def order_records(engine: AsyncEngine) -> Any:
    """Order's records in ``engine``'s database, as its app wires them."""
    from ticketing.order.repository import SqlOrderRecords
    from ticketing.order.service import CONSUMER

    return SqlOrderRecords(engine, consumer=CONSUMER)
