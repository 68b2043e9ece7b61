"""The seccomp supervisor: a small process outside the filter that answers its notifications.

Run as a script (``python -I -S _supervisor.py RECORD NAMES FD``) by
:mod:`agenttrace.governance.seccomp` before the filter is loaded, with one end of a Unix socket
pair as file descriptor FD, on which it receives the filter's notification descriptor. For every
system call the filter holds (an internet socket, an exec), from the replay or any of its
children, it writes a line to the shared violation record, then answers "permission denied":
the call never happens, and the run fails at exit with the attempt in its report. It exits
when no process uses the filter any more. Standard library only, no AgentTrace import: it must
start fast and depend on nothing the agent can touch.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import socket
import struct
import sys

_NOTIF = struct.Struct("=QII iIQ6Q")  # struct seccomp_notif: id, pid, flags, seccomp_data
_RESP = struct.Struct("=QqiI")  # struct seccomp_notif_resp: id, val, error, flags
_RECV = 0xC0000000 | (_NOTIF.size << 16) | (ord("!") << 8) | 0  # SECCOMP_IOCTL_NOTIF_RECV
_SEND = 0xC0000000 | (_RESP.size << 16) | (ord("!") << 8) | 1  # SECCOMP_IOCTL_NOTIF_SEND
_SOCK_TYPE_MASK = 0xF  # without SOCK_NONBLOCK / SOCK_CLOEXEC


def main(record: str, names: dict[int, str], channel: socket.socket) -> None:
    _, fds, _, _ = socket.recv_fds(channel, 16, 1)
    channel.close()
    if not fds:
        return  # the filter could not notify after all
    notify_fd = fds[0]
    out = os.open(record, os.O_WRONLY | os.O_APPEND)
    parent = os.getppid()
    poller = select.poll()
    poller.register(notify_fd, select.POLLIN)
    while True:
        events = poller.poll(1000)
        if not events:
            # Kernels before 5.8 signal no POLLHUP: with the parent gone, stop answering (the
            # filter then fails what it holds with ENOSYS: still refused).
            if os.getppid() != parent:
                return
            continue
        if any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, mask in events):
            return  # no process uses the filter any more
        buffer = bytearray(_NOTIF.size)
        try:
            fcntl.ioctl(notify_fd, _RECV, buffer, True)
        except OSError as exc:
            if exc.errno in (errno.EINTR, errno.ENOENT):
                continue
            return
        ident, pid, _flags, nr, _arch, _ip, *args = _NOTIF.unpack(buffer)
        text = _describe(names.get(nr, f"syscall {nr}"), pid, args)
        line = json.dumps({"pid": pid, "by": "kernel", "text": text}) + "\n"
        try:
            os.write(out, line.encode("utf-8", "replace"))
        finally:
            try:
                fcntl.ioctl(notify_fd, _SEND, _RESP.pack(ident, 0, -errno.EACCES, 0))
            except OSError:
                pass  # the caller was interrupted meanwhile; nothing to answer


def _describe(name: str, pid: int, args: list[int]) -> str:
    program = _read(f"/proc/{pid}/comm").strip() or "?"
    if name == "socket":
        family, kind = _family(args[0]), _kind(args[1] & _SOCK_TYPE_MASK)
        return f"socket({family}, {kind}) in {program}"
    if name in ("execve", "execveat"):
        path = _string(pid, args[1] if name == "execveat" else args[0])
        return f"{name}({path!r}) in {program}"
    return f"{name}() in {program}"


def _family(value: int) -> str:
    try:
        return socket.AddressFamily(value).name
    except ValueError:
        return str(value)


def _kind(value: int) -> str:
    try:
        return socket.SocketKind(value).name
    except ValueError:
        return str(value)


def _string(pid: int, address: int) -> str:
    """A NUL-terminated string in the caller's memory (needs ptrace access; '?' without)."""
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return "?"
    try:
        data = os.pread(fd, 4096, address)
    except OSError:
        return "?"
    finally:
        os.close(fd)
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


if __name__ == "__main__":
    main(
        sys.argv[1],
        {int(k): v for k, v in json.loads(sys.argv[2]).items()},
        socket.socket(fileno=int(sys.argv[3])),
    )
