"""The replay engine: a cassette of recorded answers, O(1) per lookup.

Equal keys are answered in recorded order. Entropy is kept per flow (thread job or asyncio
task): parallel work draws in the order the network answered when recording but in another order
when served instantly, so a flow gets back what it drew. Each flow's draws of a source are a byte
stream: a draw of another size than recorded (uuid7 draws 10 bytes in a new millisecond, 4 within
one) still gets the flow's next recorded bytes. A flow the recording does not know (or one that
drew all its bytes) gets the next unserved recorded draw of that exact size from any flow; past
that, there is no recorded entropy left and the Player reports it.
"""

from __future__ import annotations

import base64
import threading
from collections import deque
from typing import Any

from .._runs import clock_reads
from ..capture.messages import session_key
from .matching import Key, canonical_url, exact_key, request_key, tool_key


class ReplayEngine:
    def __init__(self, events: list[dict[str, Any]], source: str) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._calls: dict[Key, deque[dict[str, Any]]] = {}
        # The same calls by their exact bytes: a call that reproduces its recorded request byte
        # for byte (the usual case) is matched without parsing or redacting it.
        self._exact: dict[tuple[str, str, bytes], deque[dict[str, Any]]] = {}
        # (flow, source) -> [seq, data, bytes already served] in recorded order
        self._streams: dict[tuple[str, str], deque[list[Any]]] = {}
        self._whole: dict[tuple[str, int], deque[tuple[int, bytes]]] = {}  # (source, size)
        self._touched: set[int] = set()  # draws a flow's stream has served bytes of
        self._taken: set[int] = set()  # draws served whole to another flow
        self._seeds: deque[int] = deque()
        self.node: int | None = None  # uuid.getnode() of the recording machine
        self.clock: dict[str, list[int]] = {}  # wall-clock reads (ns) per flow
        self._dns: dict[tuple[str, str], deque[Any]] = {}
        # websocket and MCP sessions by (kind, URL or server), tool calls by (name, arguments)
        self._sessions: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self._tools: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self._unplayed: dict[int, dict[str, Any]] = {}
        for event in events:
            if event.get("in_tool") is not None:
                continue  # made by a tool's body, which a replay does not run: never expected
            kind = event.get("kind")
            if kind in ("websocket", "mcp"):
                self._sessions.setdefault(session_index(kind, event), deque()).append(event)
                self._unplayed[event["seq"]] = event
            elif kind == "tool":
                key = (event["name"], tool_key(event.get("args")))
                self._tools.setdefault(key, deque()).append(event)
                self._unplayed[event["seq"]] = event
            elif kind == "http":
                request = event["request"]
                self._calls.setdefault(request_key(request), deque()).append(event)
                self._exact.setdefault(exact_key(request), deque()).append(event)
                self._unplayed[event["seq"]] = event
            elif kind == "entropy":
                self._index_entropy(event)
            elif kind == "clock":
                for flow, reads in clock_reads(event).items():
                    self.clock.setdefault(flow, []).extend(reads)
            elif kind == "dns":
                self._dns.setdefault((event["host"], str(event.get("port"))), deque()).append(
                    event["result"]
                )

    # -- HTTP ----------------------------------------------------------------------------------

    def take(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The next recorded answer for a (redacted) request, or None."""
        return self._take(self._calls, request_key(request))

    def take_exact(self, method: str, url: str, body: bytes | None) -> dict[str, Any] | None:
        """The next recorded answer for a request with exactly the recorded bytes, or None."""
        return self._take(self._exact, (method.upper(), canonical_url(url), body or b""))

    def _take(self, index: dict[Any, deque[dict[str, Any]]], key: Any) -> dict[str, Any] | None:
        with self._lock:
            queue = index.get(key)
            while queue:
                event = queue.popleft()
                # each call sits in both indexes: skip what the other one already served
                if self._unplayed.pop(event["seq"], None) is not None:
                    return event
            return None

    def take_session(self, kind: str, key: str) -> dict[str, Any] | None:
        """The next recorded websocket or MCP session for a (redacted) URL or server."""
        return self._take(self._sessions, (kind, _session_key(kind, key)))

    def take_tool(self, name: str, args: Any) -> dict[str, Any] | None:
        """The next recorded call of tool ``name`` with these (encoded, redacted) arguments."""
        return self._take(self._tools, (name, tool_key(args)))

    def unplayed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._unplayed[k] for k in sorted(self._unplayed)]

    def not_yet_served(self, kind: str = "http") -> list[dict[str, Any]]:
        """Recorded events of ``kind`` not served yet (for divergence messages: a scan)."""
        with self._lock:
            return [e for e in self._unplayed.values() if e.get("kind") == kind]

    # -- entropy and DNS -------------------------------------------------------------------------

    def _index_entropy(self, event: dict[str, Any]) -> None:
        source = event.get("source")
        if source == "random.seed":
            self._seeds.append(int(event["value"]))
        elif source == "uuid.getnode":
            self.node = int(event["value"])
        else:
            data = base64.b64decode(event["data"])
            self._whole.setdefault((source, len(data)), deque()).append((event["seq"], data))
            stream = self._streams.setdefault((event.get("flow") or "", source), deque())
            stream.append([event["seq"], data, 0])

    def entropy(self, source: str, n: int, flow: str | None = None) -> bytes | None:
        """``n`` recorded bytes for a draw of ``flow``, or None when none are left."""
        if n <= 0:
            return b""
        with self._lock:
            stream = self._streams.get((flow or "", source))
            data = self._from_stream(stream, n) if stream else None
            if data is not None:
                return data
            queue = self._whole.get((source, n))
            while queue:
                seq, data = queue.popleft()
                if seq not in self._touched and seq not in self._taken:
                    self._taken.add(seq)
                    return data
            return None

    def _from_stream(self, stream: deque[list[Any]], n: int) -> bytes | None:
        pieces: list[tuple[list[Any], int]] = []
        need = n
        for item in stream:
            if item[0] in self._taken:
                continue
            take = min(len(item[1]) - item[2], need)
            pieces.append((item, take))
            need -= take
            if not need:
                break
        if need:
            return None  # the flow has fewer recorded bytes left than this draw asks for
        out = bytearray()
        for item, take in pieces:
            out += item[1][item[2] : item[2] + take]
            item[2] += take
            self._touched.add(item[0])
        while stream and (stream[0][0] in self._taken or stream[0][2] == len(stream[0][1])):
            stream.popleft()
        return bytes(out)

    def seed(self) -> int | None:
        with self._lock:
            return self._seeds.popleft() if self._seeds else None

    def dns(self, host: str, port: Any) -> Any | None:
        with self._lock:
            queue = self._dns.get((host, str(port)))
            return queue.popleft() if queue else None


def session_index(kind: str, event: dict[str, Any]) -> tuple[str, str]:
    return kind, _session_key(kind, session_key(kind, event))


def _session_key(kind: str, key: str) -> str:
    return canonical_url(key) if kind == "websocket" else key
