"""``agenttrace view``: the viewer over a local directory or one trace file, on 127.0.0.1.

No key: whoever can reach 127.0.0.1 on this machine reads the local store anyway. The Host
header must name this machine, so a web page elsewhere cannot read the runs through DNS
rebinding.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import urllib.parse
import webbrowser

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .access import OpenAccess
from .routes import viewer_routes
from .sources import LocalRuns, file_run_id

HOST = "127.0.0.1"
_LOCAL_NAMES = ["127.0.0.1", "localhost"]


def local_app(path: str | os.PathLike[str]) -> Starlette:
    """The viewer over ``path``: a local store, a directory of trace files, or one file."""
    return Starlette(
        routes=viewer_routes(OpenAccess(LocalRuns(path))),
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=_LOCAL_NAMES)],
    )


def bind(port: int = 0) -> socket.socket:
    """A listening socket on 127.0.0.1 (``port`` 0: a free one). Raises OSError."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def start_url(sock: socket.socket, path: str | os.PathLike[str]) -> str:
    """Where to point a browser: the run itself for a file, the runs list for a directory."""
    base = f"http://{HOST}:{sock.getsockname()[1]}/"
    if os.path.isfile(path):
        return base + "runs/" + urllib.parse.quote(file_run_id(path), safe="")
    return base


def on_desktop() -> bool:
    """Whether a browser can be shown: macOS and Windows, or a Linux/BSD display."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def serve(sock: socket.socket, path: str | os.PathLike[str], *, open_browser: bool) -> None:
    """Serve until SIGINT/SIGTERM, opening the browser first when asked and on a desktop."""
    import uvicorn

    url = start_url(sock, path)
    if open_browser and on_desktop():
        # webbrowser may wait for the browser it starts; the server must not.
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    config = uvicorn.Config(
        local_app(path),
        log_level="warning",
        access_log=False,
        ws="none",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run(sockets=[sock])
