"""The kernel layer: a seccomp filter, so native code cannot leave a sealed replay either.

Python's audit hook sees what Python does; a C or Rust extension (pycurl, gRPC core, an HTTP
client in Rust) calls the kernel directly. A seccomp filter, once loaded, holds for every thread
(``TSYNC``) and every child of the process and cannot be removed — which is why only a replay
that owns its process installs one (``hook.arm(sealed=True)``), never a session among others in
a test process. Built with libseccomp (Debian's ``libseccomp2``: it handles each architecture's
system call numbers and refuses foreign-ABI calls) through ``pyseccomp``, its ctypes binding.

The rules: ``socket()`` for an internet family (the kernel can read a system call's integer
arguments, not the address ``connect`` points to, so the family is checked where it is an
integer: no internet socket can be created after the seal; AF_UNIX and AF_NETLINK stay open),
``execve``/``execveat``, and ``io_uring_setup`` (its rings connect and open sockets without
system calls of their own; refused with ENOSYS, which callers treat as "no io_uring").
The socket and exec calls go to a supervisor process (:mod:`._supervisor`) that writes each one
to the shared violation record and answers EACCES; where the kernel cannot notify, they are
refused with EACCES alone.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from typing import Any

from .events import INTERNET_FAMILIES

OFF = "AGENTTRACE_GOVERNANCE_SECCOMP"  # "off": skip this layer (the fallback scan takes over)
_HELD = ("socket", "execve", "execveat")
_SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_supervisor.py")


def install(record: str) -> tuple[str | None, str]:
    """Load the filter: (the layer's name, "") or (None, why not)."""
    if not sys.platform.startswith("linux"):
        return None, "seccomp exists on Linux only"
    if os.environ.get(OFF, "").strip().lower() in ("off", "0", "false", "no"):
        return None, f"turned off ({OFF}=off)"
    try:
        import pyseccomp as seccomp
    except (ImportError, RuntimeError, OSError) as exc:  # RuntimeError: no libseccomp
        return None, f"libseccomp is not available ({exc})"
    names = _numbers(seccomp)
    supervisor = _start_supervisor(record, names)
    try:
        if supervisor is not None:
            try:
                rules = _load(seccomp, notify=True)
            except OSError:  # no notifications here (before Linux 5.7 with TSYNC)
                supervisor = _stop(supervisor)
                rules = _load(seccomp, notify=False)
        else:
            rules = _load(seccomp, notify=False)
    except OSError as exc:
        _stop(supervisor)
        return None, f"the kernel refused the filter ({exc})"
    if supervisor is None:
        return "seccomp (refusals not itemised)", ""
    process, channel = supervisor
    process.returncode = 0  # never waited for: it outlives us while children still run
    notify_fd = seccomp._libseccomp.seccomp_notify_fd(rules._filter)  # the binding wraps none
    try:
        socket.send_fds(channel, [b"fd"], [notify_fd])
    except OSError:  # the supervisor is gone: held calls fail (ENOSYS), unitemised
        return "seccomp (refusals not itemised)", ""
    finally:
        # Only the supervisor may hold it: were it open here too, a held call would wait on
        # us forever should the supervisor die; with no holder the kernel fails it instead.
        if notify_fd >= 0:
            os.close(notify_fd)
        channel.close()
    return "seccomp", ""


def _numbers(seccomp: Any) -> dict[int, str]:
    """System call number -> name, for the supervisor's report."""
    numbers = {}
    for name in _HELD:
        number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
        if number >= 0:
            numbers[number] = name
    return numbers


def _load(seccomp: Any, *, notify: bool) -> Any:
    held = seccomp.NOTIFY if notify else seccomp.ERRNO(errno.EACCES)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for family in sorted(INTERNET_FAMILIES):
        rules.add_rule(held, "socket", seccomp.Arg(0, seccomp.EQ, family))
    for name in ("execve", "execveat"):
        rules.add_rule(held, name)
    try:
        rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "io_uring_setup")
    except (OSError, ValueError):
        pass  # unknown to this libseccomp: then unknown to this kernel's callers too
    rules.set_attr(seccomp.Attr.CTL_TSYNC, 1)  # every thread, including those running already
    rules.load()
    return rules


def _start_supervisor(
    record: str, names: dict[int, str]
) -> tuple[subprocess.Popen[bytes], socket.socket] | None:
    """Started before the filter: once it is loaded, nothing can be executed any more."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                _SUPERVISOR,
                record,
                json.dumps(names),
                str(theirs.fileno()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
        )
    except OSError:
        ours.close()
        return None
    finally:
        theirs.close()
    return process, ours


def _stop(supervisor: tuple[subprocess.Popen[bytes], socket.socket] | None) -> None:
    if supervisor is not None:
        process, channel = supervisor
        channel.close()  # it exits when the channel closes without a descriptor
        process.wait()
    return None
