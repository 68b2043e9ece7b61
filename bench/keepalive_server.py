"""A minimal, fast HTTP/1.1 keep-alive server for the benchmarks, run in its own process.

Every request gets the same small JSON answer. It is deliberately faster than any real server
(one asyncio protocol, no routing, no header objects) so that the benchmarks measure the client
side: a slow server would hide the cost of instrumentation inside network time.

    python bench/keepalive_server.py --port 0     # prints "listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

BODY = b'{"ok":true,"answer":"the weather in Paris is sunny","tokens":12}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n%s" % (len(BODY), BODY)
)


class KeepAlive(asyncio.Protocol):
    """Parses just enough HTTP/1.1 (head + Content-Length body) to answer pipelined requests."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            total = end + 4 + _content_length(bytes(self._buffer[:end]))
            if len(self._buffer) < total:
                return
            del self._buffer[:total]
            assert self._transport is not None
            self._transport.write(RESPONSE)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(KeepAlive, host, port, backlog=128)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
