"""The one list of audit events that mean "the agent is reaching the real world", and how each
is described.

Beyond the socket, DNS and process events Python raises for its own APIs, the list covers the
ways around them that Python can still see: ``ctypes`` looking up the libc functions that reach
the network, start programs or leave the process without a report; ``_posixsubprocess.fork_exec``
(no event of its own: :mod:`agenttrace.governance.native` raises ``agenttrace.fork_exec``);
creating an internet socket at all, and re-importing the modules governance patches to get
their originals back (both in a sealed replay, where the kernel layer refuses internet sockets
outright: refused here first, Python's attempt is reported with the line that made it).

A few libraries create an internet socket only to learn what the machine supports (urllib3
asks whether IPv6 works when it is imported). Such a probe is refused like any other socket,
with an ``OSError`` they already handle, but it is not reported: it sends nothing, and it would
get no socket either way.
"""

from __future__ import annotations

import os
import socket
import sys
import sysconfig

DNS = frozenset(
    {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"}
)
NET = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
PROC = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "agenttrace.fork_exec",
    }
)
SOCKET_NEW = "socket.__new__"
CTYPES = frozenset({"ctypes.dlsym", "ctypes.dlsym/handle"})
IMPORT = "import"
WATCHED = DNS | NET | PROC | CTYPES | {SOCKET_NEW, IMPORT}

# Socket families that reach other machines. AF_UNIX (logging, event-loop self-pipes, local
# daemons) and AF_NETLINK (the kernel: getaddrinfo asks it which address families are
# configured) stay open.
INTERNET_FAMILIES = frozenset(
    getattr(socket, name)
    for name in ("AF_INET", "AF_INET6", "AF_PACKET", "AF_VSOCK", "AF_TIPC", "AF_CAN", "AF_RDS")
    if hasattr(socket, name)
)

# (module, function) of the known capability probes (see the module docstring).
PROBES = frozenset({("urllib3.util.connection", "_has_ipv6"), ("socket", "has_dualstack_ipv6")})

# libc functions a ctypes caller could use instead of Python's own (audited) APIs, after
# leading underscores and ``libc_`` are stripped (``__connect``, ``__libc_system``).
NATIVE_NETWORK = frozenset(
    {
        "socket",
        "connect",
        "send",
        "sendto",
        "sendmsg",
        "sendmmsg",
        "getaddrinfo",
        "getaddrinfo_a",
        "gethostbyname",
        "gethostbyname_r",
        "gethostbyname2",
        "gethostbyname2_r",
        "gethostbyaddr",
        "gethostbyaddr_r",
        "getnameinfo",
        "res_query",
        "res_search",
        "res_querydomain",
        "res_send",
        "res_nquery",
        "res_nsearch",
        "res_nquerydomain",
        "res_nsend",
    }
)
NATIVE_PROCESS = frozenset(
    {
        "system",
        "popen",
        "execl",
        "execle",
        "execlp",
        "execv",
        "execve",
        "execveat",
        "execvp",
        "execvpe",
        "fexecve",
        "posix_spawn",
        "posix_spawnp",
        "fork",
        "Fork",
        "vfork",
        "clone",
        "clone3",
    }
)
# A raw system call, another symbol lookup, or leaving the process without the report.
NATIVE_EVASION = frozenset({"syscall", "dlsym", "dlvsym", "exit", "Exit", "quick_exit"})

# Modules whose functions governance replaces: importing one afresh would hand back originals.
PROTECTED_MODULES = frozenset({"atexit", "posix", "_posixsubprocess"})

_GOVERNANCE = __name__.rpartition(".")[0]
_STDLIB = sysconfig.get_paths()["stdlib"]
_OURS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def describe(
    event: str, args: tuple, *, strict: bool = True, sealed: bool = False
) -> tuple[str, str] | None:
    """(what the agent attempted, why it is outside the recording), or None when it is not the
    outside world (a Unix-domain socket, a harmless ctypes symbol, an ordinary import)."""
    if event in PROC:
        return _describe_proc(event, args), "subprocesses are outside the recording"
    if event in DNS:
        return (
            f"DNS lookup {event.split('.', 1)[1]}({_first(args)!r})",
            "a raw lookup outside an intercepted HTTP call was not recorded",
        )
    if event == SOCKET_NEW:
        return _describe_socket(args) if sealed else None
    if event in CTYPES:
        return _describe_symbol(args)
    if event == IMPORT:
        return _describe_import(args) if sealed else None
    if _is_local_ipc(args):
        return None
    return f"{event}({_address(args)})", "raw sockets are outside the recording"


def escape_message(
    event: str, args: tuple, *, strict: bool = True, sealed: bool = False
) -> str | None:
    """What the report and the raised :class:`SandboxEscape` say, or None when ``event`` is not
    the agent leaving the sandbox."""
    described = describe(event, args, strict=strict, sealed=sealed)
    if described is None:
        return None
    what, hint = described
    return (
        f"{what} during replay, at {call_site()} — {hint}. Record the run again with this code "
        "path, or use governance_level='relaxed' to let it through with a warning."
    )


def is_probe(event: str, args: tuple) -> bool:
    """An internet socket created by a known capability probe (refused, not reported)."""
    if event != SOCKET_NEW or _describe_socket(args) is None:
        return False
    frame = sys._getframe(1)
    while frame is not None:
        where = (frame.f_globals.get("__name__"), frame.f_code.co_name)
        if where in PROBES:
            return True
        if not (where[0] == "socket" or str(where[0]).startswith(_GOVERNANCE)):
            return False
        frame = frame.f_back
    return False


def call_site() -> str:
    """``file:line`` of the innermost caller outside the standard library and AgentTrace."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith((_STDLIB, _OURS)) or filename.startswith("<frozen")):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def _first(args: tuple) -> object:
    return args[0] if args else None


def _address(args: tuple) -> str:
    return repr(args[1]) if len(args) > 1 else "?"


def _is_local_ipc(args: tuple) -> bool:
    # A Unix-domain socket path is addressed by a str/bytes path, not (host, port).
    return len(args) > 1 and isinstance(args[1], (str, bytes))


def _describe_proc(event: str, args: tuple) -> str:
    if event == "subprocess.Popen" and len(args) > 1:
        return f"subprocess {args[1]!r}"
    if event == "os.system":
        return f"os.system({_first(args)!r})"
    if event == "agenttrace.fork_exec":
        return f"_posixsubprocess.fork_exec({_first(args)!r})"
    return f"{event}({_first(args)!r})"


def _describe_socket(args: tuple) -> tuple[str, str] | None:
    family = args[1] if len(args) > 1 else None
    if family not in INTERNET_FAMILIES:
        return None  # AF_UNIX, AF_NETLINK, or -1: a socket object around an existing fd
    name = _family_name(family)
    return f"socket.socket({name})", "internet sockets are outside the recording"


def _family_name(family: object) -> str:
    try:
        return socket.AddressFamily(family).name  # type: ignore[arg-type]
    except ValueError:
        return str(family)


def _describe_symbol(args: tuple) -> tuple[str, str] | None:
    name = args[1] if len(args) > 1 else None
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    if not isinstance(name, str):
        return None  # looked up by ordinal: not a libc name
    bare = name.lstrip("_")
    bare = bare[len("libc_") :] if bare.startswith("libc_") else bare
    if bare in NATIVE_NETWORK:
        hint = "native network calls are outside the recording"
    elif bare in NATIVE_PROCESS:
        hint = "starting programs is outside the recording"
    elif bare in NATIVE_EVASION:
        hint = (
            "raw system calls, symbol lookups and exits that skip the report get around governance"
        )
    else:
        return None
    return f"ctypes lookup of {name!r}", hint


def _describe_import(args: tuple) -> tuple[str, str] | None:
    name = _first(args)
    if name not in PROTECTED_MODULES:
        return None
    return (
        f"importing {name} afresh",
        "a new copy of a module governance patched would hand back its unguarded functions",
    )
