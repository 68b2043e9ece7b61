"""A minimal threaded HTTP/1.1 server for the instrumentor tests: one endpoint per kind of body.

Every endpoint counts the requests it gets, so a replay can prove none reached it. ``/sse``
streams one event, then waits until the test says it received it (``sse_release``), then sends
the rest: a client that buffered the stream would hang instead of streaming.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BINARY = bytes(range(256)) * 8
GZIP_PAYLOAD = {"compressed": True, "items": list(range(50)), "text": "héllo " * 20}
SSE_EVENTS = [f'data: {{"n": {i}}}\n\n'.encode() for i in range(4)]
SSE_WAIT_S = 10.0
SLOW_WAIT_S = 5.0


class TestServer:
    """Runs in a daemon thread; ``url`` is its base URL; ``stop()`` closes the port."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.requests = 0
        self.bodies: list[bytes] = []  # request bodies as received, in order
        self.sse_release = threading.Event()
        self.sse_released_in_time: bool | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def count(self) -> None:
        with self._lock:
            self.requests += 1

    def stop(self) -> None:
        self._stopping.set()
        self.sse_release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def wait_slow(self) -> None:
        self._stopping.wait(SLOW_WAIT_S)


def _handler(server: TestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall between headers and body

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._route()

        def do_POST(self) -> None:
            self._route()

        def _route(self) -> None:
            server.count()
            body = self._body()
            server.bodies.append(body)
            path = self.path.split("?", 1)[0]
            route = {
                "/json": lambda: self._json(200, {"ok": True, "echo": json.loads(body or b"null")}),
                "/sse": self._sse,
                "/binary": lambda: self._send(200, "application/octet-stream", BINARY),
                "/gzip": self._gzip,
                "/missing": lambda: self._json(404, {"error": "not found", "path": path}),
                "/slow": self._slow,
                "/redirect": self._redirect,
                "/upload": lambda: self._json(200, {"received": body.decode("latin-1")}),
                "/truncated": self._truncated,
                "/stall": self._stall,
            }.get(path)
            if route is None:
                self._json(404, {"error": "no route"})
            else:
                route()

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(parts)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _redirect(self) -> None:
            self._send(302, "application/json", b'{"moved": true}', {"Location": "/json"})

        def _truncated(self) -> None:
            # Promises 100 bytes, sends 10 and hangs up: an error in the middle of the body.
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True

        def _send(
            self, status: int, ctype: str, data: bytes, extra: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Multi", "a=1")  # a repeated header must survive as two
            self.send_header("X-Multi", "b=2")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _json(self, status: int, value: Any) -> None:
            self._send(status, "application/json", json.dumps(value).encode())

        def _gzip(self) -> None:
            data = gzip.compress(json.dumps(GZIP_PAYLOAD).encode(), mtime=0)
            self._send(200, "application/json", data, {"Content-Encoding": "gzip"})

        def _sse(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(SSE_EVENTS[0])
            server.sse_released_in_time = server.sse_release.wait(SSE_WAIT_S)
            for event in SSE_EVENTS[1:]:
                self._chunk(event)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _stall(self) -> None:
            # One event, then silence until the server stops: a read timeout mid-stream.
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(SSE_EVENTS[0])
            server.wait_slow()
            self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _slow(self) -> None:
            server.wait_slow()
            try:
                self._json(200, {"late": True})
            except OSError:
                pass  # the client gave up long ago

    return Handler
