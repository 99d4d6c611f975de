"""Processes the tests start on free loopback ports (the dev OIDC server, any child process),
and the local MariaDB stopped and started again. Everything started here is stopped here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ticketing.cli.supervisor import die_with_parent
from ticketing.shared.settings import Settings

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


REPO = Path(__file__).resolve().parents[2]
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
    argv = ["node", str(DEV_IDP / "server.mjs"), "--port", str(port), "--host", "127.0.0.1"]
    with child_process(argv, port):
        yield f"http://127.0.0.1:{port}/realms/ticketing"


def fetch_token(issuer: str, client: str, scope: str | None = None) -> str:
    """An access token for one of the dev clients, by the client-credentials grant."""

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
