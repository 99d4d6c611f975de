"""The compose deployment as docker-compose renders it, and how its services are read: published
ports, mounted files, secrets given as placeholders with a default, and images pinned to a
version."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PLACEHOLDER = re.compile(r"^\$\{[A-Z_]+:(?P<default>[^}]*)\}$")
TICKETING_SERVICES = ("inventory", "booking", "order", "gateway")
# A pinned tag is a version, never a moving name such as `latest`.
PINNED_TAG = re.compile(r"^v?\d+\.\d+\.\d+$")


def compose_config() -> dict[str, Any]:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose validates the compose file: apt-get install docker-compose"
    result = subprocess.run(
        [tool, "-f", str(DEPLOY / "compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def secret_default(value: str) -> str:
    match = PLACEHOLDER.match(value)
    return match.group("default") if match else value


def bindings(service: dict[str, Any]) -> list[tuple[str | None, int, int]]:
    """A service's published ports as (host address, published, target), from either form
    docker-compose prints (a dict, or ``ip:published:target/proto`` with a host address)."""
    found: list[tuple[str | None, int, int]] = []
    for port in service["ports"]:
        if isinstance(port, dict):
            found.append((port.get("host_ip"), int(port["published"]), int(port["target"])))
        else:
            *host, published, target = str(port).split("/")[0].split(":")
            found.append((host[0] if host else None, int(published), int(target)))
    return found


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Where each host path (or volume) is mounted in the container."""
    found = {}
    for volume in service["volumes"]:
        if isinstance(volume, dict):
            found[str(volume["source"])] = str(volume["target"])
        else:
            source, target, *_ = str(volume).split(":")
            found[source] = target
    return found


def pinned_tag(image: str, repository: str) -> str:
    name, _, tag = image.partition(":")
    assert name == repository, image
    assert PINNED_TAG.match(tag), image
    return tag
