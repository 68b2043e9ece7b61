"""The one list of audit events that mean "the agent is reaching the real world"."""

from __future__ import annotations

DNS = frozenset(
    {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"}
)
NET = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
PROC = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"})
WATCHED = DNS | NET | PROC


def describe(event: str, args: tuple) -> tuple[str, str] | None:
    """(what the agent attempted, why it is outside the recording), or None when it is not
    the outside world (a Unix-domain socket: a logging or event-loop socket)."""
    if event in PROC:
        return _describe_proc(event, args), "subprocesses are outside the recording"
    if event in DNS:
        return (
            f"DNS lookup {event.split('.', 1)[1]}({_first(args)!r})",
            "a raw lookup outside an intercepted HTTP call was not recorded",
        )
    if _is_local_ipc(args):
        return None
    return f"{event}({_address(args)})", "raw sockets are outside the recording"


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
    return f"{event}({_first(args)!r})"
