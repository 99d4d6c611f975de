"""deploy/k8s migrations: a Job upgrades the schema, and the services that use a database wait
for it, holding their pods until the migration ran."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.harness.databases import drop_databases
from tests.integration.k8s_render import (
    K8S,
    REPO,
    TARGETS,
    Manifest,
    of_kind,
    render,
)
from ticketing.shared.db.migrations import upgrade
from ticketing.shared.settings import DATABASE_SERVICES, Settings


@pytest.mark.parametrize("target", TARGETS)
def test_the_migration_job_upgrades_and_database_services_wait_for_it(
    target: str, tmp_path: Path
) -> None:
    objects = render(target)
    (job,) = of_kind(objects, "Job").values()
    spec = job["spec"]["template"]["spec"]
    (migrate,) = spec["containers"]
    assert migrate["args"] == ["db", "upgrade"]
    assert spec["restartPolicy"] == "Never"
    script = (K8S / "base" / "wait_for_schema.py").read_text()
    for name, deployment in of_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        waits = pod.get("initContainers", [])
        if name not in DATABASE_SERVICES:
            assert not waits, name
            continue
        (wait,) = waits
        command, path = wait_command(objects, pod, wait, tmp_path / name)
        assert command[0] == "python", command
        assert command[2:] == [name], command
        assert path.read_text() == script, "the ConfigMap carries the script as it is in git"


def wait_command(
    objects: tuple[Manifest, ...], pod: Manifest, wait: Manifest, root: Path
) -> tuple[list[str], Path]:
    """The wait's command, with the script it names written under ``root`` (a temporary folder)
    from the ConfigMap volume it is mounted from, and that path."""
    script_path = Path(wait["command"][1])
    (mount,) = [m for m in wait["volumeMounts"] if script_path.is_relative_to(m["mountPath"])]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    data = of_kind(objects, "ConfigMap")[volume["configMap"]["name"]]["data"]
    content = data[str(script_path.relative_to(mount["mountPath"]))]
    local = root / script_path.relative_to("/")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(content)
    return list(wait["command"]), local


def test_the_wait_for_schema_holds_a_pod_until_the_migration_ran(tmp_path: Path) -> None:
    """The inventory pod's init container, run as rendered against the real database server:
    it waits while the database is missing and lets the pod start once it is migrated."""
    objects = render("overlays/dev")
    pod = of_kind(objects, "Deployment")["inventory"]["spec"]["template"]["spec"]
    (wait,) = pod["initContainers"]
    command, script = wait_command(objects, pod, wait, tmp_path)
    settings = dataclasses.replace(
        Settings.from_env(), db_prefix=f"ticketing_test_k8s_{uuid.uuid4().hex[:8]}_"
    )
    env = {
        **os.environ,
        "TICKETING_MYSQL_URL": settings.mysql_url,
        "TICKETING_DB_PREFIX": settings.db_prefix,
        "TICKETING_ALEMBIC_DIR": str(REPO / "alembic"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    log = tmp_path / "wait.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(script), *command[2:]], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while "waiting for" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        assert "not readable yet" in log.read_text(), log.read_text()
        time.sleep(3)
        assert process.poll() is None, "started before the migration: " + log.read_text()
        upgrade(settings, "inventory")
        assert process.wait(timeout=30) == 0, log.read_text()
        assert "the image's head" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        asyncio.run(drop_databases(settings))
