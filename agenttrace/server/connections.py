"""Connection guards uvicorn has no setting for: a deadline for each request's headers, and a cap
on the connections one client address holds open.

uvicorn arms its keep-alive timer only after a response and drops it at the first byte, so a
client that connects and then sends nothing, or trickles its headers a byte at a time
(slowloris), would hold a connection forever. These guards live in a subclass of uvicorn's h11
protocol, which ``uvicorn.Config(http=...)`` accepts as the HTTP implementation.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_log = logging.getLogger("agenttrace.server")


def _raw_response(status: str, message: str, *headers: str) -> bytes:
    # h11 cannot answer a request it has not parsed; the bytes are plain HTTP all the same.
    body = message.encode()
    head = [f"HTTP/1.1 {status}", "content-type: text/plain; charset=utf-8", *headers]
    head += [f"content-length: {len(body)}", "connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


_TIMED_OUT = _raw_response("408 Request Timeout", "request headers took too long\n")
_TOO_MANY = _raw_response(
    "503 Service Unavailable", "too many connections from this address\n", "retry-after: 1"
)


def guarded_protocol(header_timeout: float, max_per_client: int) -> type[asyncio.Protocol]:
    """An HTTP protocol class that closes connections whose request headers take longer than
    ``header_timeout`` seconds, and refuses a client's connections beyond ``max_per_client``
    (0: no cap). One class per server: the count of open connections lives with it."""
    open_by_client: Counter[str] = Counter()

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _counted_as: str | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
            super().connection_made(transport)  # type: ignore[arg-type]
            host = self.client[0] if self.client else None
            if max_per_client and host is not None:
                if open_by_client[host] >= max_per_client:
                    _log.debug(
                        "refused a connection from %s: %d already open", host, max_per_client
                    )
                    self.transport.write(_TOO_MANY)
                    self.transport.close()
                    return
                open_by_client[host] += 1
                self._counted_as = host
            self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            host, self._counted_as = self._counted_as, None
            if host is not None:
                open_by_client[host] -= 1
                if open_by_client[host] <= 0:
                    del open_by_client[host]
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._stop_waiting()  # the request line and headers are in

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._await_headers()  # the next request on this keep-alive connection

        def _await_headers(self) -> None:
            self._stop_waiting()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _stop_waiting(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.write(_TIMED_OUT)
                self.transport.close()

    return GuardedH11Protocol
