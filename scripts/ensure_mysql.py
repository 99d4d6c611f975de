"""Make sure a MySQL-compatible server answers on TICKETING_MYSQL_URL.

When nothing answers on a loopback address and a local ``mariadbd`` is installed, start it and
wait for it. Exit 1 with a hint when no server can be had.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pymysql
from sqlalchemy.engine import make_url

DEFAULT_URL = "mysql+aiomysql://root@127.0.0.1:3306"


def answers(url: str) -> bool:
    parsed = make_url(url)
    try:
        conn = pymysql.connect(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 3306,
            user=parsed.username or "root",
            password=parsed.password or "",
            connect_timeout=2,
        )
    except pymysql.err.OperationalError:
        return False
    conn.close()
    return True


def start_local_mariadb() -> bool:
    daemon = shutil.which("mariadbd") or (
        "/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None
    )
    starter = shutil.which("start-stop-daemon")
    if daemon is None or starter is None:
        return False
    os.makedirs("/run/mysqld", exist_ok=True)
    shutil.chown("/run/mysqld", user="mysql", group="mysql")
    print(f"ensure_mysql: starting {daemon}", file=sys.stderr)
    subprocess.run(  # noqa: S603 - fixed local command
        [starter, "--start", "--oknodo", "--background", "--exec", daemon],
        check=False,
    )
    return True


def main() -> int:
    url = os.environ.get("TICKETING_MYSQL_URL", DEFAULT_URL)
    if answers(url):
        return 0
    host = make_url(url).host or "127.0.0.1"
    if host in ("127.0.0.1", "localhost", "::1") and start_local_mariadb():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if answers(url):
                print("ensure_mysql: MariaDB is up", file=sys.stderr)
                return 0
            time.sleep(0.5)
    safe = make_url(url).render_as_string(hide_password=True)
    print(
        f"ensure_mysql: no MySQL/MariaDB answers at {safe}.\n"
        "Install and start MariaDB (apt-get install mariadb-server) or set TICKETING_MYSQL_URL.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
