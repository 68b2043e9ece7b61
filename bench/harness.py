"""What the orchestrator (run.py) and the case workers (case_*.py) share.

A worker is a fresh interpreter running one variant of one case: it receives its parameters as
one JSON argument and prints one ``RESULT {...}`` line. Everything timed happens inside the
worker; the orchestrator only schedules, collects and compares.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PYTHON = sys.executable
RESULT_PREFIX = "RESULT "

# A developer's own settings must not leak into a measured process.
_ISOLATED_PREFIXES = ("AGENTTRACE_", "OTEL_")


class WorkerError(RuntimeError):
    """A worker died or printed no result."""


# -- worker side ------------------------------------------------------------------------------


def params() -> dict[str, Any]:
    """The worker's parameters: ``python case_x.py '{"variant": ...}'``."""
    return json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}


def emit(result: dict[str, Any]) -> None:
    """Hand the result to the orchestrator (the last RESULT line wins)."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def per_call_us(call: Callable[[int], Any], indices: Sequence[int], batches: int) -> float:
    """Median over batches of the mean time per call, in µs.

    Batches, not single calls: one call is too short to time without the timer dominating,
    and the median batch shrugs off a neighbour's burst of CPU on this shared machine.
    """
    size = max(1, len(indices) // max(1, batches))
    means = []
    for start in range(0, len(indices), size):
        chunk = indices[start : start + size]
        if len(chunk) < size // 2 and means:
            break  # a tiny tail batch is mostly timer noise
        begin = time.perf_counter()
        for i in chunk:
            call(i)
        means.append((time.perf_counter() - begin) / len(chunk) * 1e6)
    return statistics.median(means)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far.

    VmHWM, not getrusage: Linux carries ru_maxrss across fork+exec, so a worker would report
    its parent's peak (the orchestrator's, after it wrote a big events file).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def payload(i: int) -> dict[str, Any]:
    """The small JSON body every HTTP case posts; distinct per call so body matching matters."""
    return {
        "model": "local-model",
        "messages": [{"role": "user", "content": f"What is the weather in Paris? (call {i})"}],
        "temperature": 0,
    }


# -- orchestrator side ------------------------------------------------------------------------


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ISOLATED_PREFIXES)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR), str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


def run_worker(
    script: str,
    job_params: dict[str, Any],
    *,
    cwd: str,
    timeout: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``bench/<script>`` in a fresh interpreter and return its RESULT.

    A non-zero exit is fine when a RESULT was printed first (a replay that deliberately leaves
    recorded calls unplayed fails at exit under governance, by design).
    """
    command = [PYTHON, str(BENCH_DIR / script), json.dumps(job_params)]
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=clean_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise WorkerError(f"{script} timed out after {timeout:.0f}s") from exc
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
    raise WorkerError(f"{script} exited {done.returncode} with no result: " + " | ".join(tail))


@contextmanager
def background(command: list[str], *, cwd: str, ready: str, timeout: float = 30) -> Iterator[str]:
    """Start a server process, wait for a line containing ``ready``, yield that line, stop it."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield _wait_for(proc, ready, timeout)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(proc: subprocess.Popen[str], ready: str, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line.rstrip())
        if ready in line:
            _drain(proc)
            return line.strip()
    raise WorkerError(f"{proc.args[1]} did not start: " + " | ".join(seen[-5:]))


def _drain(proc: subprocess.Popen[str]) -> None:
    """Keep reading the server's output so a chatty server never blocks on a full pipe."""
    import threading

    def sink() -> None:
        assert proc.stdout is not None
        for _ in proc.stdout:
            pass

    threading.Thread(target=sink, daemon=True).start()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to 0, read it back)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def median(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
