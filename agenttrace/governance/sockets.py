"""The fallback where seccomp is unavailable: find internet sockets opened behind Python's back.

Without the kernel layer, native code (a C or Rust extension) can open a socket no audit event
reports. Its trace is the socket itself: each of the process's descriptors that is a socket
(``/proc/self/fd`` → ``socket:[inode]``) and appears in the kernel's internet tables
(``/proc/self/net/tcp``, ``tcp6``, ``udp``, ``udp6``, ``raw``, ``raw6``). Under governance Python
cannot create such a socket at all, so one that was not there when the replay started was opened
natively: detected at each watched event and at exit, it fails the run. This finds sockets, not
bytes: what was sent before the check cannot be taken back — the kernel layer prevents, this
only reports.
"""

from __future__ import annotations

import os
from collections.abc import Callable

_TABLES = ("tcp", "tcp6", "udp", "udp6", "raw", "raw6")


def available() -> bool:
    return os.path.isdir("/proc/self/fd") and os.path.exists("/proc/self/net/tcp")


def scanner() -> Callable[[], list[str]]:
    """A function returning a description of each internet socket opened since now, once."""
    known = set(_internet_sockets())

    def scan() -> list[str]:
        found = []
        for inode, description in _internet_sockets().items():
            if inode not in known:
                known.add(inode)
                found.append(
                    f"an internet socket opened behind Python's back (native code): {description}"
                )
        return found

    return scan


def _internet_sockets() -> dict[str, str]:
    inodes = _socket_inodes()
    if not inodes:
        return {}
    found = {}
    for table in _TABLES:
        try:
            with open(f"/proc/self/net/{table}", encoding="ascii", errors="replace") as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) > 9 and fields[9] in inodes:
                        found[fields[9]] = f"{table} {_address(fields[1])} -> {_address(fields[2])}"
        except OSError:
            continue
    return found


def _socket_inodes() -> set[str]:
    inodes = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _address(hex_address: str) -> str:
    host, _, port = hex_address.partition(":")
    try:
        if len(host) == 8:
            raw = bytes.fromhex(host)[::-1]
            ip = ".".join(str(b) for b in raw)
        else:
            words = [bytes.fromhex(host[i : i + 8])[::-1].hex() for i in range(0, 32, 8)]
            ip = "[" + ":".join(w[i : i + 4] for w in words for i in (0, 4)) + "]"
        return f"{ip}:{int(port, 16)}"
    except ValueError:
        return hex_address
