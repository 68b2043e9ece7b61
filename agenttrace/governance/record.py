"""The violation record a replay shares with its children and with the kernel layer.

A forked child (``os.fork``, multiprocessing's fork start method) is governed like its parent,
but what it violates lives in its own memory; the seccomp supervisor is another process
altogether. Both append one JSON line per violation to a file the parent created when its gate
was armed (forked children inherit the open file, spawned Python children find it through
``AGENTTRACE_GOVERNANCE_RECORD``); the parent reads it for its report and its exit status.
Removing, replacing or truncating the file is itself reported.
"""

from __future__ import annotations

import json
import os
import tempfile

ENV = "AGENTTRACE_GOVERNANCE_RECORD"


class SharedRecord:
    """Violations from other processes of the run, one JSON line each (``O_APPEND``: lines from
    several writers never interleave)."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            fd, path = tempfile.mkstemp(prefix="agenttrace-governance-", suffix=".jsonl")
            os.close(fd)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        info = os.fstat(self.fd)
        self._identity = (info.st_dev, info.st_ino)
        self._size = 0

    def append(self, pid: int, source: str, text: str) -> None:
        line = json.dumps({"pid": pid, "by": source, "text": text}) + "\n"
        os.write(self.fd, line.encode("utf-8", "replace"))

    def read(self, own_pid: int) -> list[str]:
        """Every record so far, as report lines; a line saying so when the file was tampered
        with (the records it held are then lost, so the run must fail)."""
        tampered = self._tampered()
        try:
            size = os.fstat(self.fd).st_size
            data = os.pread(self.fd, size, 0) if size else b""
        except OSError:
            data = b""
        if len(data) < self._size:
            tampered = tampered or "it shrank"
        self._size = max(self._size, len(data))
        lines = [_line(raw, own_pid) for raw in data.splitlines() if raw.strip()]
        if tampered:
            lines.append(
                f"SandboxEscape: the governance record {self.path} was tampered with ({tampered}); "
                "what children and the kernel reported may be lost"
            )
        return lines

    def _tampered(self) -> str | None:
        try:
            info = os.fstat(self.fd)
        except OSError:
            return "its file descriptor was closed"
        if (info.st_dev, info.st_ino) != self._identity:
            return "its file descriptor now points elsewhere"
        try:
            on_disk = os.stat(self.path)
        except OSError:
            return "it was removed"
        if (on_disk.st_dev, on_disk.st_ino) != self._identity:
            return "it was replaced"
        return None

    def remove(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _line(raw: bytes, own_pid: int) -> str:
    try:
        entry = json.loads(raw)
        pid, source, text = int(entry["pid"]), str(entry["by"]), str(entry["text"])
    except (ValueError, KeyError, TypeError):
        return f"SandboxEscape: unreadable line in the governance record: {raw[:200]!r}"
    if source == "kernel":
        where = "this process" if pid == own_pid else f"process {pid}"
        return f"SandboxEscape: {text} (refused by the kernel in {where})"
    return f"in child process {pid}: {text}"
