"""A real PostgreSQL server on loopback for tests and benchmarks: a throwaway cluster.

``postgres_server()`` runs ``initdb`` into a new temporary directory, starts the server on
127.0.0.1 only (a free port; its unix socket in that directory, not in /var/run), and yields a
``postgresql://`` URL with a password-authenticated user and a database of its own. The server
is stopped and the directory removed on exit, even when the body raises. ``database(url)``
adds one more database on that server (for a test that must not see another's rows) and drops
it afterwards. The ``postgres_url`` fixture in ``tests/conftest.py`` starts one server per
session; ``benchmarks`` can ``from tests.pg_server import postgres_server`` from the root.
The URL suits libpq and psycopg2; give SQLAlchemy (and so Dagster) ``sqlalchemy_url(url)``,
since SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, which is not installed.

Needs PostgreSQL 13 or later, which refuses to run as root: under uid 0 the server binaries
run as the ``postgres`` system user (which the Debian package creates) in a directory it owns.
Nothing here installs anything; ``PostgresUnavailable`` says how to (the fixture skips with it).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
USER = "wsi_test"
DATABASE = "wsi_test"
#: Settings of the throwaway cluster: loopback only, no durability (a crash loses nothing).
SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}
INSTALL_HINT = "install it with `apt-get install -y postgresql` (Debian/Ubuntu, as root)"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be run here (not installed, or root without a postgres user)."""


def server_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: ``pg_config --bindir``, then ``PATH``,
    then the highest-versioned ``/usr/lib/postgresql/*/bin`` (where Debian puts them)."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):  # libpq-dev's pg_config also answers
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(d) for d in debian), key=_version, reverse=True)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PostgresUnavailable(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}"
    )


def _version(bindir: Path) -> tuple[int, ...]:
    """``(15,)`` for ``/usr/lib/postgresql/15/bin``."""
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """A new cluster on 127.0.0.1 and a free port; yields
    ``postgresql://USER:PASSWORD@127.0.0.1:PORT/DB``. Stopped and deleted on exit."""
    bindir = server_bindir()
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                f"running as root and there is no `postgres` user to run the server as; "
                f"{INSTALL_HINT}"
            ) from None
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
    root = Path(tempfile.mkdtemp(prefix="pg-"))  # short: the socket path must fit 107 bytes
    data, log = root / "data", root / "server.log"

    def server_log() -> str:
        return log.read_text(errors="replace") if log.exists() else ""

    def run(*args: str) -> None:
        result = subprocess.run(
            args,
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            **run_as,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{server_log()[-3000:]}"
            )

    password = secrets.token_hex(16)
    try:
        (root / "pwfile").write_text(password + "\n")
        if run_as:
            for path in (root, root / "pwfile"):
                os.chown(path, run_as["user"], run_as["group"])
        run(
            str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={root / 'pwfile'}",
            "--auth-host=scram-sha-256", "--auth-local=trust",  # local: the 0700 socket dir
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        (root / "pwfile").unlink()
        settings = SETTINGS | {"unix_socket_directories": str(root)}
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{k} = '{v}'\n" for k, v in settings.items())
        for attempt in range(3):  # another process may take the free port before we bind it
            port = _free_port()
            try:
                run(
                    str(bindir / "pg_ctl"), "start", "-D", str(data), "-w", "-t", "60",
                    "-l", str(log), "-o", f"-p {port}",
                )  # fmt: skip
                break
            except RuntimeError:
                if attempt == 2 or "already in use" not in server_log():
                    raise
        url = f"postgresql://{USER}:{password}@{HOST}:{port}"
        _execute(f"{url}/postgres", f'CREATE DATABASE "{DATABASE}"')
        yield f"{url}/{DATABASE}"
    finally:
        try:
            if (data / "postmaster.pid").exists():
                try:
                    run(str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w")
                except RuntimeError:
                    run(str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w")
        finally:
            shutil.rmtree(root)


def _execute(url: str, statement: str) -> None:
    """One statement outside a transaction (as CREATE/DROP DATABASE need)."""
    import psycopg2

    connection = psycopg2.connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


@contextmanager
def database(url: str) -> Iterator[str]:
    """A new, empty database on the server of ``url``; yields its URL, drops it on exit."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    server, _, _ = url.rpartition("/")
    _execute(url, f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        _execute(url, f'DROP DATABASE "{name}" WITH (FORCE)')


def sqlalchemy_url(url: str) -> str:
    """``url`` with the psycopg2 driver named (``postgresql+psycopg2://``): SQLAlchemy 2.1
    reads a bare ``postgresql://`` as psycopg 3, which dagster-postgres does not install."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)
