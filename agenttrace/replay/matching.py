"""Canonical matching keys: two requests that are the same call get the same key.

A key is method, URL with sorted query, canonical body — computed from the request *after* the
same redaction as at record time, so a request whose secrets were masked in the recording
still matches. Headers take no part (traceparent, user-agent, x-stainless-* vary per run).
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._body import decode_body

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
        return canonical_json(body["json"])
    if "text" in body:
        text = body["text"]
        try:  # a JSON text stored as text (e.g. pretty-printed) still compares by content
            return canonical_json(json.loads(text))
        except ValueError:
            return text
    return body.get("base64", "")


# Built once: json.dumps with options builds a new encoder on every call.
canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def exact_key(request: dict[str, Any]) -> tuple[str, str, bytes]:
    """A request by its exact bytes (the fast path: no parsing, no redaction)."""
    return (
        request["method"].upper(),
        canonical_url(request["url"]),
        decode_body(request.get("body")),
    )


def request_key(request: dict[str, Any]) -> Key:
    """The matching key of a (redacted) request dict."""
    return (
        request["method"].upper(),
        canonical_url(request["url"]),
        canonical_body(request.get("body")),
    )


def tool_key(args: Any) -> str:
    """The matching key of a tool call's (encoded, redacted) arguments."""
    return canonical_json(args)
