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
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog

from ticketing.cli.dev_infra import (
    TANSU_FETCH_MAX_WAIT_MS,
    DevStackError,
    check_database,
    create_topics,
    dev_idp,
    port_open,
    tansu_binary,
)
from ticketing.cli.supervisor import Child
from ticketing.shared.http.client import TRANSPORT_ERRORS, new_session
from ticketing.shared.settings import (
    CALLED_SERVICES,
    DATABASE_SERVICES,
    SERVICES,
    ServiceName,
    Settings,
    url_host,
)

REPLICA_PORT_STEP = 100
log = structlog.get_logger("ticketing.dev")


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
        idp = dev_idp(self.settings)
        if not (idp / "node_modules" / "oidc-provider").is_dir():
            npm = shutil.which("npm")
            if npm is None:
                raise DevStackError(f"run `npm ci --prefix {idp}` first")
            process = await asyncio.create_subprocess_exec(
                npm, "ci", "--prefix", str(idp), "--no-audit", "--no-fund"
            )
            if await process.wait() != 0:
                raise DevStackError(f"`npm ci --prefix {idp}` failed")
        if port_open("127.0.0.1", self.idp_port):
            raise DevStackError(f"port {self.idp_port} is taken; pass --idp-port")
        argv = [node, str(idp / "server.mjs"), "--port", str(self.idp_port)]
        self.start("dev-idp", [*argv, "--host", "127.0.0.1"])
        self.env["TICKETING_OIDC_ISSUER"] = f"http://127.0.0.1:{self.idp_port}/realms/ticketing"
        await self.wait_for_port("dev-idp", self.idp_port)

    def plan_replicas(self) -> None:
        """Choose every replica's port and tell callers where the called services' are."""
        taken = {"kafka": self.kafka_port, "the dev OIDC server": self.idp_port}
        self.ports = replica_ports(self.settings, self.replicas, taken)
        if self.replicas == 1:
            return
        for service in CALLED_SERVICES:
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
    from ticketing.shared.db.migrations import upgrade

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
