"""Shared fixtures and helpers.

Helpers are plain functions (importable as `from conftest import run_python`) and are also
exposed as fixtures of the same name, whichever reads better in a test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO_ROOT / "examples"

# The local LLM/tool server lives in examples/ so the demo can run it standalone.
if str(EXAMPLES_DIR) not in sys.path:
    sys.path.insert(0, str(EXAMPLES_DIR))

from llm_server import LLMServer, start_server  # noqa: E402

# Variables that would leak the developer's own configuration into a subprocess.
_ISOLATED_PREFIXES = ("AGENTTRACE_", "OTEL_")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the usual bind-to-0 trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without AGENTTRACE_*/OTEL_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ISOLATED_PREFIXES)}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra or {})
    return env


def run_python(
    code_or_path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    args: list[str] | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a script in a fresh interpreter (the venv's python) and capture its output.

    `code_or_path` is a path to an existing .py file, or source code (dedented), which is
    written to `script.py` in a temporary directory so the program has a real script name.
    `env` is added to a copy of the environment cleared of AGENTTRACE_*/OTEL_* variables.
    `cwd` defaults to a fresh temporary directory, so a local trace store never lands in the
    repository. Never raises on a non-zero exit; check `.returncode`.
    """
    workdir = Path(cwd) if cwd is not None else Path(tempfile.mkdtemp(prefix="agenttrace-test-"))
    candidate = Path(code_or_path)
    is_file = isinstance(code_or_path, os.PathLike) or (
        str(code_or_path).endswith(".py") and "\n" not in str(code_or_path) and candidate.is_file()
    )
    if is_file:
        script = candidate.resolve()
    else:
        script_dir = Path(tempfile.mkdtemp(prefix="agenttrace-script-"))
        script = script_dir / "script.py"
        script.write_text(textwrap.dedent(str(code_or_path)), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script), *(args or [])],
        cwd=workdir,
        env=clean_env(env),
        input=input,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def cli(
    *args: str, cwd: str | os.PathLike[str] | None = None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`agenttrace ARGS` in a fresh interpreter with `clean_env(env)`, output piped (plain text)."""
    return subprocess.run(
        [sys.executable, "-m", "agenttrace.cli", *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    """A fresh local OpenAI/Anthropic/tool server for one test; see examples/llm_server.py."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def module_llm_server() -> Iterator[LLMServer]:
    """One local server for a whole test module, for recordings made once and shared."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="free_port")
def _free_port_fixture() -> int:
    return free_port()


@pytest.fixture(name="run_python")
def _run_python_fixture():
    return run_python


# --------------------------------------------------------------------------------------
# Fixtures for other areas (agenttrace runtime, replay, exporters, backend server) go
# below this line. Keep the ones above generic: they must not import agenttrace.
# --------------------------------------------------------------------------------------


@dataclass
class ServeProcess:
    """A running `agenttrace serve` (see `agenttrace_serve`)."""

    url: str
    proc: subprocess.Popen[bytes]
    db: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        """What the server printed to stdout so far (all of it once the block has ended)."""
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def logs(self) -> str:
        return self.stdout + self.stderr

    def healthy(self) -> bool:
        with contextlib.suppress(requests.ConnectionError):
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        return False


@contextlib.contextmanager
def agenttrace_serve(
    directory: Path,
    *args: str,
    db_name: str = "agenttrace.db",
    db_url: str | None = None,
    start_timeout: float = 30,
) -> Iterator[ServeProcess]:
    """A real `agenttrace serve` on a free port with `--db directory/db_name` (or `db_url`, a
    PostgreSQL URL) and `args`.

    Runs in `directory` with `clean_env()`; its stdout and stderr go to fresh log files in
    `directory` (one pair per start, so a restart keeps the first run's output). Yields once
    GET /healthz answers 200; fails the test if the server exits or is not healthy within
    `start_timeout`. On exit: SIGTERM (unless it has already ended), then kill if it has not
    stopped within 20 s.
    """
    port = free_port()
    fd, out = tempfile.mkstemp(prefix="serve-", suffix=".out", dir=directory)
    os.close(fd)
    stdout_path = Path(out)
    stderr_path = stdout_path.with_suffix(".err")
    db = directory / db_name
    command = ["agenttrace.cli", "serve", "--port", str(port), "--db", db_url or str(db), *args]
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", *command],
            stdout=stdout,
            stderr=stderr,
            env=clean_env(),
            cwd=directory,
        )
    served = ServeProcess(f"http://127.0.0.1:{port}", proc, db, stdout_path, stderr_path)
    try:
        deadline = time.monotonic() + start_timeout
        while not served.healthy():
            if proc.poll() is not None:
                pytest.fail(f"agenttrace serve exited with {proc.returncode}:\n{served.logs()}")
            if time.monotonic() >= deadline:
                pytest.fail(f"agenttrace serve did not become healthy:\n{served.logs()}")
            time.sleep(0.05)
        yield served
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Send `sig` to a process (unless it has already ended); kill it if it has not stopped
    within `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def record_in_process(tmp_path: Path, agent: Callable[[], Any]) -> Any:
    """Run ``agent()`` in a recording session of this process (local store ``tmp_path``)."""
    import agenttrace

    agenttrace.init(local_dir=str(tmp_path))
    try:
        return agent()
    finally:
        agenttrace.shutdown()


def start_replay(tmp_path: Path, level: str = "governance") -> Any:
    """Start replaying ``tmp_path/last.json`` in this process; returns the session (stop it with
    ``agenttrace.shutdown()``)."""
    import agenttrace
    from agenttrace import _session

    agenttrace.init(
        mode="replay",
        governance_level=level,
        replay_events=str(tmp_path / "last.json"),
        local_dir=str(tmp_path),
    )
    session = _session.current()
    assert session is not None
    return session


def _started_postgres(stack: contextlib.ExitStack) -> object:
    from _postgres import PostgresUnavailable
    from _postgres import postgres as start

    try:
        return stack.enter_context(start())
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A throwaway PostgreSQL server for the session (see tests/_postgres.py); `.database()`
    gives a fresh database's URL. Skips, saying why, only where no server can be started."""
    with contextlib.ExitStack() as stack:
        yield _started_postgres(stack)


@pytest.fixture
def private_postgres() -> Iterator[object]:
    """A PostgreSQL server of the test's own, which it may `.stop()` and `.start()`."""
    with contextlib.ExitStack() as stack:
        yield _started_postgres(stack)
