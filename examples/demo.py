"""`make demo`: record the weather agent against a live local server, then replay it offline.

1. start examples/llm_server.py as a subprocess on a free port;
2. run examples/agent.py with AGENTTRACE_MODE=record and summarise the trace it wrote;
3. stop the server, put a tripwire listener on its port, and run the agent again with
   AGENTTRACE_MODE=replay under governance: stdout must match byte for byte, and nothing
   may connect to the tripwire.

Exit status: 0 when the replay matched, 1 when it did not, 2 when recording failed.
"""

from __future__ import annotations

import difflib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
LOCAL_DIR = REPO / ".agenttrace" / "demo"
AGENT_TIMEOUT = 120


def say(line: str = "") -> None:
    print(line, flush=True)


def indent(text: str, prefix: str = "  │ ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- server


def start_llm_server(port: int) -> subprocess.Popen[str]:
    # A small delay between SSE chunks lets the answer visibly stream, as from a real model.
    cmd = [
        sys.executable,
        str(EXAMPLES / "llm_server.py"),
        "--port",
        str(port),
        "--chunk-delay",
        "0.02",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_until_up(url: str, proc: subprocess.Popen[str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llm_server exited early:\n{proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"llm_server did not answer on {url} within {timeout:.0f}s")


def stop_llm_server(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Tripwire:
    """Listens on the stopped server's port and counts every connection attempt.

    A replay that leaks a real request would hit this port; each connection is closed at
    once, so the agent fails fast instead of hanging.
    """

    def __init__(self, port: int) -> None:
        self.connections = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self._sock.close()


# --------------------------------------------------------------------------- agent


def agent_env(server_url: str, **settings: str) -> dict[str, str]:
    """A clean environment: no API key (so traces go to the local store), no stray settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTRACE_", "OTEL_"))}
    env.update(LLM_SERVER_URL=server_url, PYTHONIOENCODING="utf-8", **settings)
    return env


def run_agent(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Run from the store directory so no pyproject.toml [tool.agenttrace] leaks in.
    LOCAL_DIR.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.run(
            [sys.executable, str(EXAMPLES / "agent.py")],
            cwd=LOCAL_DIR,
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=AGENT_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        err += f"\n(demo: agent killed after {AGENT_TIMEOUT}s)"
        return subprocess.CompletedProcess(exc.cmd, -9, out, err)


def show_failure(title: str, result: subprocess.CompletedProcess[str]) -> None:
    say(f"✗ {title} (exit status {result.returncode})")
    if result.stdout.strip():
        say("  stdout:")
        say(indent(result.stdout))
    if result.stderr.strip():
        say("  stderr (last 40 lines):")
        say(indent("\n".join(result.stderr.splitlines()[-40:])))


# --------------------------------------------------------------------------- trace summary


def agenttrace_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The `agenttrace` command, as a user would type it."""
    env = {**os.environ, "AGENTTRACE_LOCAL_DIR": str(LOCAL_DIR)}
    return subprocess.run(
        [sys.executable, "-m", "agenttrace.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=AGENT_TIMEOUT,
    )


def show_trace(path: Path) -> None:
    say(f"$ agenttrace show {path.relative_to(REPO)}")
    result = agenttrace_cli("show", str(path))
    say(indent(result.stdout or result.stderr, "  "))


def diff_traces(recorded: Path, replayed: Path) -> bool:
    say(f"$ agenttrace diff {recorded.relative_to(REPO)} {replayed.relative_to(REPO)}")
    result = agenttrace_cli("diff", str(recorded), str(replayed))
    say(indent(result.stdout or result.stderr, "  "))
    return result.returncode == 0


# --------------------------------------------------------------------------- phases


def record(server_url: str) -> tuple[Path, str] | None:
    """Run the agent live; return the trace file and the stdout the replay must reproduce."""
    say("▶ 1/2 record   AGENTTRACE_MODE=record (no API key: local store)")
    trace_file = LOCAL_DIR / "last.json"
    # A stale trace from an earlier demo must not pass for this run's.
    trace_file.unlink(missing_ok=True)
    result = run_agent(
        agent_env(server_url, AGENTTRACE_MODE="record", AGENTTRACE_LOCAL_DIR=str(LOCAL_DIR))
    )
    if result.returncode != 0:
        show_failure("recording failed", result)
        return None
    say(indent(result.stdout))
    if not trace_file.is_file():
        show_failure(f"the agent ran but wrote no {trace_file}", result)
        return None
    say()
    say(f"▶ recorded trace {trace_file.relative_to(REPO)}")
    show_trace(trace_file)
    return trace_file, result.stdout


def replay(server_url: str, trace_file: Path, recorded_stdout: str) -> bool:
    say("▶ 2/2 replay   AGENTTRACE_MODE=replay, AGENTTRACE_GOVERNANCE_LEVEL=governance")
    env = agent_env(
        server_url,
        AGENTTRACE_MODE="replay",
        AGENTTRACE_GOVERNANCE_LEVEL="governance",
        AGENTTRACE_REPLAY_EVENTS_FILE=str(trace_file),
        # The replayed run goes to its own store so it never overwrites the recording.
        AGENTTRACE_LOCAL_DIR=str(LOCAL_DIR / "replay"),
    )
    port = int(server_url.rsplit(":", 1)[1])
    tripwire = Tripwire(port)
    try:
        result = run_agent(env)
    finally:
        tripwire.close()
    if result.stdout:
        say(indent(result.stdout))
    say()
    ok = True
    if result.returncode != 0:
        show_failure("replay failed", result)
        ok = False
    if tripwire.connections:
        say(f"✗ {tripwire.connections} connection(s) reached the stopped server's port")
        ok = False
    if result.stdout != recorded_stdout:
        say("✗ replay stdout differs from the recording:")
        diff = difflib.unified_diff(
            recorded_stdout.splitlines(),
            result.stdout.splitlines(),
            "record",
            "replay",
            lineterm="",
        )
        say(indent("\n".join(diff)))
        ok = False
    replayed = LOCAL_DIR / "replay" / "replays" / "last.json"
    if ok and replayed.is_file():
        say()
        ok = diff_traces(trace_file, replayed)
    if ok:
        say("✓ replay matched: stdout identical, 0 requests reached the network")
        say()
        say("Next: look at both runs in the browser (the waterfall, each call, the redactions):")
        say(f"  .venv/bin/agenttrace view {LOCAL_DIR.relative_to(REPO)}")
        say("and ask 'what if' (README, Replaying and what-if):")
        say(
            f"  AGENTTRACE_LOCAL_DIR={LOCAL_DIR.relative_to(REPO)} .venv/bin/agenttrace replay "
            "--edit SEQ=answer.json -- .venv/bin/python examples/agent.py"
        )
    return ok


def main() -> int:
    say("══ AgentTrace demo: record a weather agent, then replay it offline ══")
    port = free_port()
    server_url = f"http://127.0.0.1:{port}"
    server = start_llm_server(port)
    try:
        wait_until_up(server_url, server)
        say(f"▶ llm_server (OpenAI-compatible + weather tool) on {server_url}")
        recording = record(server_url)
        if recording is None:
            return 2
    except RuntimeError as exc:
        say(f"✗ {exc}")
        return 2
    finally:
        stop_llm_server(server)
    say()
    say(f"▶ llm_server stopped; port {port} is now a tripwire that counts connections")
    return 0 if replay(server_url, *recording) else 1


if __name__ == "__main__":
    sys.exit(main())
