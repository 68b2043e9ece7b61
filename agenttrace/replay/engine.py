"""The replay engine: a cassette of recorded answers, O(1) per lookup.

Equal keys are answered in recorded order. Entropy is kept in recorded order and per flow
(thread job or asyncio task): parallel work draws in the order the network answered when
recording but in another order when served instantly, so a flow gets back what it drew, else
the next in line.
"""

from __future__ import annotations

import base64
import threading
from collections import deque
from typing import Any

from .matching import Key, canonical_url, exact_key, request_key


class ReplayEngine:
    def __init__(self, events: list[dict[str, Any]], source: str) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._calls: dict[Key, deque[dict[str, Any]]] = {}
        # The same calls by their exact bytes: a call that reproduces its recorded request byte
        # for byte (the usual case) is matched without parsing or redacting it.
        self._exact: dict[tuple[str, str, bytes], deque[dict[str, Any]]] = {}
        self._entropy: dict[tuple[str, int], deque[tuple[int, bytes]]] = {}
        self._entropy_by_flow: dict[tuple[str, str, int], deque[tuple[int, bytes]]] = {}
        self._entropy_served: set[int] = set()
        self._seeds: deque[int] = deque()
        self._dns: dict[tuple[str, str], deque[Any]] = {}
        self._unplayed: dict[int, dict[str, Any]] = {}
        for event in events:
            kind = event.get("kind")
            if kind == "http":
                request = event["request"]
                self._calls.setdefault(request_key(request), deque()).append(event)
                self._exact.setdefault(exact_key(request), deque()).append(event)
                self._unplayed[event["seq"]] = event
            elif kind == "entropy":
                if event.get("source") == "random.seed":
                    self._seeds.append(int(event["value"]))
                else:
                    data = base64.b64decode(event["data"])
                    item = (event["seq"], data)
                    self._entropy.setdefault((event["source"], len(data)), deque()).append(item)
                    if event.get("flow"):
                        key = (event["flow"], event["source"], len(data))
                        self._entropy_by_flow.setdefault(key, deque()).append(item)
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

    def unplayed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._unplayed[k] for k in sorted(self._unplayed)]

    def not_yet_served(self) -> list[dict[str, Any]]:
        """Recorded calls still waiting in the index (for divergence messages: a scan)."""
        with self._lock:
            return [e for q in self._calls.values() for e in q] or list(self._unplayed.values())

    # -- entropy and DNS -------------------------------------------------------------------------

    def entropy(self, source: str, n: int, flow: str | None = None) -> bytes | None:
        with self._lock:
            queues = [self._entropy.get((source, n))]
            if flow is not None:
                queues.insert(0, self._entropy_by_flow.get((flow, source, n)))
            for queue in queues:
                while queue:
                    seq, data = queue.popleft()
                    if seq not in self._entropy_served:  # each draw sits in both queues
                        self._entropy_served.add(seq)
                        return data
            return None

    def seed(self) -> int | None:
        with self._lock:
            return self._seeds.popleft() if self._seeds else None

    def dns(self, host: str, port: Any) -> Any | None:
        with self._lock:
            queue = self._dns.get((host, str(port)))
            return queue.popleft() if queue else None
