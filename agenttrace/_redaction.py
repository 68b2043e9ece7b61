"""Redaction: the one module every event and step payload goes through before it leaves us.

Three layers, applied in this order:
1. default masking of credential headers (always on);
2. step filters (``agenttrace.step(filter=[...])``): field names, regexes, or a callable;
3. global masks (``init(mask=...)`` / ``AGENTTRACE_MASK``): regexes over every string.

Each replaced value becomes ``MARKER`` and its path is listed in the event's ``redacted``.
Redaction is idempotent, so a recorded (already redacted) request and a live request redacted
at replay time produce the same matching key.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MARKER = "[REDACTED]"

DEFAULT_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)

_FIELD_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")

EventFilter = Callable[[dict[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Rules:
    """What to redact in one context (the innermost step's filters plus its parents')."""

    fields: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()
    callables: tuple[EventFilter, ...] = ()

    @classmethod
    def parse(cls, spec: Any) -> Rules:
        """Turn a step ``filter=`` argument into rules; raises TypeError/ValueError on nonsense."""
        if spec is None:
            return EMPTY
        if callable(spec):
            return cls(callables=(spec,))
        if isinstance(spec, (str, re.Pattern)):
            spec = [spec]
        fields: set[str] = set()
        patterns: list[re.Pattern[str]] = []
        callables: list[EventFilter] = []
        for item in spec:
            if isinstance(item, re.Pattern):
                patterns.append(item)
            elif callable(item):
                callables.append(item)
            elif isinstance(item, str) and _FIELD_NAME.match(item):
                fields.add(item.lower())
            elif isinstance(item, str):
                try:
                    patterns.append(re.compile(item, re.IGNORECASE))
                except re.error as exc:
                    raise ValueError(
                        f"step filter {item!r} is not a field name nor a valid regex: {exc}"
                    ) from None
            else:
                raise TypeError(
                    f"step filter entries must be strings, regexes or callables, not {item!r}"
                )
        return cls(frozenset(fields), tuple(patterns), tuple(callables))

    def __add__(self, other: Rules) -> Rules:
        if other is EMPTY:
            return self
        if self is EMPTY:
            return other
        return Rules(
            self.fields | other.fields,
            self.patterns + other.patterns,
            self.callables + other.callables,
        )


EMPTY = Rules()


@dataclass
class _Walk:
    rules: Rules
    masks: tuple[re.Pattern[str], ...]
    paths: list[str] = field(default_factory=list)

    def key_matches(self, key: str) -> bool:
        lk = key.lower()
        if lk in self.rules.fields:
            return True
        return any(p.fullmatch(key) for p in self.rules.patterns)

    def text(self, value: str, path: str) -> str:
        new = value
        for pattern in self.rules.patterns + self.masks:
            new = pattern.sub(MARKER, new)
        if new != value:
            self.paths.append(path)
        return new

    def value(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                sub = f"{path}.{k}" if path else str(k)
                if isinstance(k, str) and self.key_matches(k) and v != MARKER:
                    out[k] = MARKER
                    self.paths.append(sub)
                else:
                    out[k] = self.value(v, sub)
            return out
        if isinstance(value, list):
            return [self.value(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str):
            return self.text(value, path)
        return value


class Redactor:
    """Applies default masking, step rules and global masks to events and step payloads."""

    def __init__(self, masks: Iterable[str] | Callable[[str], str] = ()) -> None:
        self._mask_callable: Callable[[str], str] | None = None
        if callable(masks):
            self._mask_callable = masks
            self._masks: tuple[re.Pattern[str], ...] = ()
        else:
            self._masks = tuple(re.compile(m) for m in masks)

    def _walk(self, rules: Rules) -> _Walk:
        return _Walk(rules, self._masks)

    def payload(self, value: Any, rules: Rules) -> tuple[Any, list[str]]:
        """Redact a step input or result (any JSON-like value)."""
        walk = self._walk(rules)
        out = walk.value(value, "")
        if self._mask_callable:
            out = _apply_callable(out, self._mask_callable)
        return out, walk.paths

    def request(self, request: dict[str, Any], rules: Rules) -> tuple[dict[str, Any], list[str]]:
        walk = self._walk(rules)
        out = self._message(request, "request", walk)
        out["url"] = self._url(request["url"], walk)
        return out, walk.paths

    def event(self, event: dict[str, Any], rules: Rules) -> dict[str, Any] | None:
        """A redacted copy of a complete event, with ``redacted`` paths filled in."""
        walk = self._walk(rules)
        out = dict(event)
        out["request"] = self._message(event["request"], "request", walk)
        out["request"]["url"] = self._url(event["request"]["url"], walk)
        if event.get("response") is not None:
            out["response"] = self._message(event["response"], "response", walk)
        if event.get("error") is not None:
            err = dict(event["error"])
            err["message"] = walk.text(err.get("message", ""), "error.message")
            out["error"] = err
        if self._mask_callable:
            out = _apply_callable(out, self._mask_callable)
        out["redacted"] = sorted(set(event.get("redacted", []) + walk.paths))
        for fn in rules.callables:
            result = fn(copy.deepcopy(out))
            if result is None:
                return stub(out)
            out = result
        return out

    def _message(self, message: dict[str, Any], where: str, walk: _Walk) -> dict[str, Any]:
        out = dict(message)
        if "headers" in message:
            headers = []
            for name, value in message["headers"]:
                path = f"{where}.headers.{name.lower()}"
                if name.lower() in DEFAULT_SECRET_HEADERS or walk.key_matches(name):
                    if value != MARKER:
                        walk.paths.append(path)
                    headers.append([name, MARKER])
                else:
                    headers.append([name, walk.text(value, path)])
            out["headers"] = headers
        if message.get("body") is not None:
            out["body"] = self._body(
                message["body"], f"{where}.body", walk, message.get("headers", [])
            )
        if message.get("chunks"):
            out["chunks"] = [
                {**c, "text": walk.text(c["text"], f"{where}.chunks[{i}]")} if "text" in c else c
                for i, c in enumerate(message["chunks"])
            ]
        return out

    def _body(self, body: dict[str, Any], path: str, walk: _Walk, headers: list) -> dict[str, Any]:
        if "json" in body:
            return {**body, "json": walk.value(body["json"], path)}
        if "text" in body:
            text = body["text"]
            ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
            if "x-www-form-urlencoded" in ctype.lower():
                return {"text": self._form(text, path, walk)}
            return {"text": walk.text(text, path)}
        return body

    def _form(self, text: str, path: str, walk: _Walk) -> str:
        pairs = parse_qsl(text, keep_blank_values=True)
        out = []
        for k, v in pairs:
            if walk.key_matches(k) and v != MARKER:
                walk.paths.append(f"{path}.{k}")
                v = MARKER
            else:
                v = walk.text(v, f"{path}.{k}")
            out.append((k, v))
        return urlencode(out, safe="[]")

    def _url(self, url: str, walk: _Walk) -> str:
        parts = urlsplit(url)
        if not parts.query:
            return walk.text(url, "request.url")
        query = []
        before = len(walk.paths)
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if walk.key_matches(k) and v != MARKER:
                walk.paths.append(f"request.url.query.{k}")
                v = MARKER
            else:
                v = walk.text(v, f"request.url.query.{k}")
            query.append((k, v))
        base = walk.text(
            urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), "request.url"
        )
        if len(walk.paths) == before:
            return url  # untouched: keep the caller's exact encoding
        return base + "?" + urlencode(query, safe="[]")


def stub(event: dict[str, Any]) -> dict[str, Any]:
    """What remains of an event whose step filter dropped it: enough to replay its shape."""
    kept = {
        k: event[k]
        for k in ("seq", "kind", "step", "span_id", "duration_ms", "client")
        if k in event
    }
    kept["request"] = {"method": event["request"]["method"], "url": event["request"]["url"]}
    if event.get("response") is not None:
        kept["response"] = {"status": event["response"].get("status"), "headers": [], "body": None}
    if event.get("error") is not None:
        kept["error"] = {
            "type": event["error"].get("type"),
            "module": event["error"].get("module"),
            "message": MARKER,
        }
    kept["redacted"] = ["*"]
    kept["dropped"] = True
    return kept


def _apply_callable(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {k: _apply_callable(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_apply_callable(v, fn) for v in value]
    if isinstance(value, str):
        return fn(value)
    return value


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr, sort_keys=False)
