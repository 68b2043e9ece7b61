"""A throwaway PostgreSQL server (tests and bench): initdb into a temp dir, start it on a free
port as an unprivileged user, hand out fresh databases, stop it and delete it at the end.

PostgreSQL refuses to run as root; as root the server runs as ``nobody``. Debian keeps the
binaries in /usr/lib/postgresql/<version>/bin (not on PATH); .ci/run installs them when missing.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

USER = "agenttrace"
# Tests do not test PostgreSQL's durability; the bench keeps the defaults (durable, like SQLite's).
FAST = ("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


class Postgres:
    """A throwaway server; ``database()`` creates a fresh database and returns its URL."""

    def __init__(self, root: Path, bindir: Path, runner: _Runner, fast: bool) -> None:
        self.port = _free_port()
        self._root = root
        self._bindir = bindir
        self._runner = runner
        self._fast = fast
        self._names = itertools.count(1)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def database(self, prefix: str = "t") -> str:
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> None:
        options = [f"-p {self.port}", f"-k {self._root}", "-c listen_addresses=127.0.0.1"]
        options += FAST if self._fast else ()
        log = self._root / "server.log"
        self._pg_ctl("start", "-l", log, "-t", "60", "-o", " ".join(options), log=log)

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "fast")

    def _pg_ctl(self, action: str, *args: object, log: Path | None = None) -> None:
        command = [self._bindir / "pg_ctl", "-D", self._root / "data", "-w", *args, action]
        self._runner.run(command, f"pg_ctl {action}", log=log)


def binaries() -> Path:
    """The directory holding initdb and pg_ctl (the newest installed version)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not versions:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin); "
            "apt-get install postgresql"
        )
    return Path(versions[-1]).parent


@contextlib.contextmanager
def postgres(*, fast: bool = True) -> Iterator[Postgres]:
    """Start a server for the duration of the block; raises PostgresUnavailable if it cannot."""
    bindir = binaries()
    runner = _Runner()
    root = Path(tempfile.mkdtemp(prefix="agenttrace-pg-"))
    runner.own(root)
    try:
        runner.run(
            [bindir / "initdb", "-D", root / "data", "-U", USER, "--auth=trust", "-E", "UTF8"]
            + ["--locale=C"],
            "initdb",
        )
        server = Postgres(root, bindir, runner, fast)
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(PostgresUnavailable):  # already stopped by a test
                server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


class _Runner:
    """Runs the PostgreSQL tools as the current user, or as ``nobody`` when that is root."""

    def __init__(self) -> None:
        self.account = pwd.getpwnam("nobody") if os.geteuid() == 0 else None

    def own(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def run(self, command: list[object], what: str, log: Path | None = None) -> None:
        extra = {}
        if self.account is not None:
            extra = {
                "user": self.account.pw_uid,
                "group": self.account.pw_gid,
                "extra_groups": [],
            }
        done = subprocess.run(
            [str(part) for part in command],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
            env={**os.environ, "LC_ALL": "C"},
            **extra,
        )
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()
            if log is not None and log.exists():
                detail += "\n" + log.read_text(errors="replace")[-2000:]
            raise PostgresUnavailable(f"{what} failed ({done.returncode}): {detail}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
