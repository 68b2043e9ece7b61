"""The replay engine: serve intercepted calls and entropy from a recording, O(1) per call.

Calls are matched on a canonical key — method, URL with sorted query, canonical body — computed
from the request *after* the same redaction as at record time, so a request whose secrets were
masked in the recording still matches. Equal keys are answered in recorded order.
"""

from __future__ import annotations

import base64
import difflib
import functools
import json
import threading
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._body import decode_body
from ._jsondiff import MISSING, differences, short

Key = tuple[str, str, str]


@functools.lru_cache(maxsize=4096)  # a run calls a handful of URLs, thousands of times
def canonical_url(url: str) -> str:
    parts = urlsplit(url)
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    netloc = parts.netloc.lower()
    for scheme, port in (("http", ":80"), ("https", ":443")):
        if parts.scheme == scheme and netloc.endswith(port):
            netloc = netloc[: -len(port)]
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", query, ""))


def canonical_body(body: dict[str, Any] | None) -> str:
    if not body:
        return ""
    if "json" in body:
        return _canonical_json(body["json"])
    if "text" in body:
        text = body["text"]
        try:  # a JSON text stored as text (e.g. pretty-printed) still compares by content
            return _canonical_json(json.loads(text))
        except ValueError:
            return text
    return body.get("base64", "")


# Built once: json.dumps with options builds a new encoder on every call.
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def exact_key(request: dict[str, Any]) -> tuple[str, str, bytes]:
    return (
        request["method"].upper(),
        canonical_url(request["url"]),
        decode_body(request.get("body")),
    )


def request_key(request: dict[str, Any]) -> Key:
    """The matching key of a (redacted) request dict: volatile headers never take part."""
    return (
        request["method"].upper(),
        canonical_url(request["url"]),
        canonical_body(request.get("body")),
    )


class ReplayEngine:
    def __init__(self, events: list[dict[str, Any]], source: str) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._calls: dict[Key, deque[dict[str, Any]]] = {}
        # The same calls by their exact bytes: a call that reproduces its recorded request byte
        # for byte (the usual case) is matched without parsing or redacting it.
        self._exact: dict[tuple[str, str, bytes], deque[dict[str, Any]]] = {}
        # Entropy in recorded order, and per flow (thread job or asyncio task): parallel work
        # draws in the order the network answered when recording but in another order when
        # served instantly, so a flow gets back what it drew, else the next in line.
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

    def candidates(
        self, request: dict[str, Any], limit: int = 3
    ) -> list[tuple[dict[str, Any], str]]:
        """The recorded calls closest to a request that matched none, with what differs.

        Only run on a miss (an error path), so a scan is fine here.
        """
        method, url, body = request_key(request)
        scored = []
        with self._lock:
            pool = [e for q in self._calls.values() for e in q] or list(self._unplayed.values())
        for event in pool:
            rmethod, rurl, rbody = request_key(event["request"])
            score = 0.0
            score += 2.0 if rmethod == method else 0.0
            score += 3.0 * difflib.SequenceMatcher(None, rurl, url).ratio()
            score += 2.0 * _similarity(rbody, body)
            scored.append(
                (score, event["seq"], event, _difference(method, url, body, rmethod, rurl, rbody))
            )
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [(event, diff) for _, _, event, diff in scored[:limit]]

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


def _similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if len(a) + len(b) > 20000:  # keep the error path fast for huge bodies
        a, b = a[:10000], b[:10000]
    return difflib.SequenceMatcher(None, a, b, autojunk=False).quick_ratio()


def _difference(method: str, url: str, body: str, rmethod: str, rurl: str, rbody: str) -> str:
    parts = []
    if method != rmethod:
        parts.append(f"method {rmethod} recorded, {method} now")
    if url != rurl:
        parts.append(f"URL recorded {rurl}")
    if body != rbody:
        parts.append("body differs: " + body_diff(rbody, body))
    return "; ".join(parts) or "identical key (already consumed by an earlier call)"


def body_diff(recorded: str, actual: str) -> str:
    """A short description of where two canonical bodies differ."""
    try:
        a, b = json.loads(recorded or "null"), json.loads(actual or "null")
    except ValueError:
        a = b = None
    else:
        diffs = list(_json_diff(a, b, "body"))
        if diffs:
            return "; ".join(diffs[:3]) + (f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else "")
    for i, (x, y) in enumerate(zip(recorded, actual, strict=False)):
        if x != y:
            return f"at char {i}: recorded …{recorded[max(0, i - 20) : i + 30]!r}…, now …{actual[max(0, i - 20) : i + 30]!r}…"
    return f"recorded {len(recorded)} chars, now {len(actual)} chars"


def _json_diff(a: Any, b: Any, path: str):
    for d in differences(a, b, path):
        if d.lengths:
            yield f"{d.path}: recorded {d.a} items, now {d.b}"
        elif d.a is MISSING:
            yield f"{d.path}: not recorded, now {short(d.b)}"
        elif d.b is MISSING:
            yield f"{d.path}: recorded {short(d.a)}, now missing"
        else:
            yield f"{d.path}: recorded {short(d.a)}, now {short(d.b)}"
