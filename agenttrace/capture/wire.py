"""The HTTP/1.1 wire codec: a recorded answer as the bytes a server would have sent.

Clients built on http.client (urllib.request, urllib3, requests) are served a *real*
``http.client.HTTPResponse`` parsed from these bytes, so everything above it behaves exactly
as with a server: chunked reads, decoding, length checks.
"""

from __future__ import annotations

import http.client
import io
from collections.abc import Iterator
from typing import Any

from .calls import Answer
from .errors import rebuild_error, root_cause


class _ReplayRaw(io.RawIOBase):
    """The socket's byte stream: the recorded wire pieces, then EOF or the recorded error."""

    def __init__(self, pieces: Iterator[bytes], error: BaseException | None) -> None:
        self._pieces = pieces
        self._current = memoryview(b"")
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._current:
            piece = next(self._pieces, None)
            if piece is None:
                if self._error is not None:
                    raise self._error
                return 0
            self._current = memoryview(piece)
        n = min(len(buffer), len(self._current))
        buffer[:n] = self._current[:n]
        self._current = self._current[n:]
        return n


class _ReplaySocket:
    """Just enough of a socket for ``http.client.HTTPResponse``: ``makefile``."""

    def __init__(self, raw: _ReplayRaw) -> None:
        self._raw = raw

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(self._raw)

    def close(self) -> None:
        pass


def replay_response(
    answer: Answer, method: str, error: BaseException | None = None, url: str | None = None
) -> http.client.HTTPResponse:
    """Parse the recorded answer as a server's reply: status line, headers, framed body."""
    raw = _ReplayRaw(wire(answer), error)
    response = http.client.HTTPResponse(_ReplaySocket(raw), method=method, url=url)  # type: ignore[arg-type]
    response.begin()
    return response


def wire(answer: Answer) -> Iterator[bytes]:
    """Status line and headers, then the body framed as recorded (chunked or not)."""
    version = answer.http_version if answer.http_version in ("HTTP/1.0", "HTTP/1.1") else "HTTP/1.1"
    head = [f"{version} {answer.status} {answer.reason}".rstrip() + "\r\n"]
    head += [f"{name}: {value}\r\n" for name, value in answer.headers]
    yield ("".join(head) + "\r\n").encode("latin-1", "replace")  # http.client reads latin-1
    chunked = any(
        name.lower() == "transfer-encoding" and value.strip().lower() == "chunked"
        for name, value in answer.headers
    )
    for data in answer.chunks():
        yield b"%x\r\n%s\r\n" % (len(data), data) if chunked else data
    if chunked and answer.error is None:
        yield b"0\r\n\r\n"


def wire_error(answer: Answer, fallback: type[BaseException]) -> BaseException | None:
    """What the replayed socket raises after the recorded body (None: a plain EOF).

    When the root cause is what the socket did, it is raised there so the client wraps it as
    it did live: a timeout or reset (urllib3: ``ReadTimeoutError``, ``ProtocolError``); a body
    cut short was an EOF, after which the client raises ``IncompleteRead`` itself, with its
    data. Anything else (a decoding error) is raised as recorded.
    """
    if answer.error is None:
        return None
    cause = rebuild_error(root_cause(answer.error), fallback)
    if isinstance(cause, http.client.IncompleteRead):
        return None
    if isinstance(cause, OSError):
        return cause
    return rebuild_error(answer.error, fallback)
