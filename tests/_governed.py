"""Helpers of the governance tests: the outside world they must not reach, the kernel check.

``CountingListener`` is a local TCP listener that counts who reached it. It accepts connections on 127.0.0.1, answers anything with a minimal HTTP/1.1 response (so an
HTTP client that got through finishes instead of hanging), and keeps each connection open (so
an escaped socket is still there when a scan looks for it). ``connections`` counts accepts.
"""

from __future__ import annotations

import functools
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import clean_env, run_python

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


class CountingListener:
    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._peers: list[int] = []  # client ports, in accept order
        self._sentinels: set[int] = set()
        self._open: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._server.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._peers.append(conn.getpeername()[1])
            self._open.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @property
    def connections(self) -> int:
        """Connections from others so far, counted once every pending one was accepted: a
        sentinel connection of ours, queued behind them, is accepted last."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sentinel:
            port = sentinel.getsockname()[1]
            self._sentinels.add(port)
            deadline = time.monotonic() + 10
            while port not in self._peers and time.monotonic() < deadline:
                time.sleep(0.01)
        assert port in self._peers, "the listener stopped accepting"
        return len([p for p in self._peers if p not in self._sentinels])

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            if conn.recv(65536):
                conn.sendall(_RESPONSE)
        except OSError:
            pass

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._server.close()
        for conn in self._open:
            conn.close()


_PROBE = """
from agenttrace.governance import seccomp
from agenttrace.governance.record import SharedRecord
record = SharedRecord()
layer, missing = seccomp.install(record.path)
record.remove()
print(layer or "", missing, sep="\\n")
"""


@functools.cache
def kernel_layer() -> tuple[str | None, str]:
    """(the kernel layer a sealed replay gets here, or None; why not) — probed in a child,
    since a seccomp filter cannot be removed."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        return None, f"the probe failed: {result.stderr.strip()[-300:]}"
    layer, missing = (result.stdout.splitlines() + ["", ""])[:2]
    return layer or None, missing


def kernel_layer_or_skip() -> str:
    layer, missing = kernel_layer()
    if layer is None:
        pytest.skip(f"no seccomp here: {missing}")
    return layer


OTEL_INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")

SCRIPT = """
{before}
{prelude}
import ctypes, multiprocessing, multiprocessing.util, os, socket, struct, sys

PORT = int(os.environ["PORT"])
MARKER = os.environ["MARKER"]


def native_connect():
    # connect + write through libc, as a C extension would: no Python socket, no audit event
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", PORT)
    addr += socket.inet_aton("127.0.0.1") + bytes(8)
    libc.connect(fd, addr, len(addr))
    libc.write(fd, b"GET / HTTP/1.0\\r\\n\\r\\n", 18)


def dial():
    sock = socket.socket()
    sock.settimeout(5)
    sock.connect(("127.0.0.1", PORT))
    sock.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")

{body}

if __name__ == "__main__":
    try:
        escape()
    except BaseException as exc:
        print("caught", type(exc).__name__, flush=True)
    print("end", flush=True)
"""


def record_any(workdir: Path) -> Path:
    """Any recording will do: each escape is a call the recording does not hold. (Importing
    multiprocessing draws entropy, which the replay must find in the recording.)"""
    result = run_python(
        "import agenttrace\nagenttrace.init()\nimport multiprocessing\n", cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    return workdir / ".agenttrace" / "last.json"


def governed(
    body: str,
    recording: Path,
    cwd: Path,
    port: int,
    launcher: str = "init",
    env: dict[str, str] | None = None,
    before: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run ``body`` (defining ``escape()``) in a governed replay of its own process;
    ``before`` runs ahead of AgentTrace's start (under ``init``)."""
    prelude = "import agenttrace\nagenttrace.init()" if launcher == "init" else ""
    script = cwd / "agent.py"
    script.write_text(
        SCRIPT.format(before=textwrap.dedent(before), prelude=prelude, body=textwrap.dedent(body)),
        encoding="utf-8",
    )
    command = [sys.executable, str(script)]
    if launcher == "opentelemetry-instrument":
        command.insert(0, str(OTEL_INSTRUMENT))
    return subprocess.run(
        command,
        cwd=cwd,
        env=clean_env(
            {
                "AGENTTRACE_MODE": "replay",
                "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
                "AGENTTRACE_REPLAY_EVENTS_FILE": str(recording),
                "PORT": str(port),
                "MARKER": str(cwd / "marker"),
                **(env or {}),
            }
        ),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=90,
    )


def assert_contained(result, listener: CountingListener, cwd: Path, names: str) -> None:
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "replay under governance FAILED" in result.stderr, result.stderr
    assert names in result.stderr, result.stderr
    assert listener.connections == 0, result.stderr
    assert not (cwd / "marker").exists(), "an exec got through"
