"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temp cluster on loopback.

`MIRSEARCH_TEST_POSTGRES_URL` (an existing server) wins; otherwise initdb + pg_ctl start one on a
free port, as the `postgres` user when the tests run as root (PostgreSQL refuses root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


class Unavailable(Exception):
    """No PostgreSQL server can be had here; the message says why."""


def _binaries() -> Path:
    def version(folder: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", Path(folder).parent.name))

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(folder) / "initdb").is_file():
            return Path(folder)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise Unavailable("PostgreSQL is not installed (Debian: apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server() -> Iterator[str]:
    """Yields an admin URL (database `postgres`) of a running server; stops it afterwards."""
    if url := os.environ.get("MIRSEARCH_TEST_POSTGRES_URL"):
        yield url
        return
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise Unavailable("psycopg is not installed (pip install 'mirsearch[postgres]')") from exc
    bin_dir = _binaries()
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise Unavailable("running as root without runuser: cannot start PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="mirsearch-pg-"))
    data, port = root / "data", _free_port()
    if as_user:
        try:
            shutil.chown(root, user="postgres")
        except LookupError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise Unavailable("running as root and there is no postgres user") from exc
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    try:
        subprocess.run(
            [*as_user, bin_dir / "initdb", "-D", data, "-U", "postgres", "-A", "trust"], **run
        )
        options = f"-k {root} -h 127.0.0.1 -p {port} -F -c fsync=off"
        subprocess.run(
            [
                *as_user,
                bin_dir / "pg_ctl",
                "-D",
                data,
                "-o",
                options,
                "-w",
                "-l",
                root / "log",
                "start",
            ],
            **run,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        detail = getattr(exc, "stderr", "") or str(exc)
        raise Unavailable(f"could not start PostgreSQL: {detail.strip()[-300:]}") from exc
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new empty database on the server; dropped afterwards. Yields its URL."""
    name = f"mirsearch_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
