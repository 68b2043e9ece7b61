"""Redaction: the one module every event, step payload and span goes through before it leaves us.

Three layers, applied together to every string:
1. default scrubbing (always on): secret-looking keys and well-known secret formats, see
   ``_scrub_patterns`` (``scrub_keep`` turns it off for named keys);
2. step filters (``agenttrace.step(filter=[...])``): field names, regexes, or a callable;
3. global masks (``init(mask=...)`` / ``AGENTTRACE_MASK``): regexes (or a callable) over every
   string.

Each replaced value becomes ``MARKER`` and its path is listed in the event's ``redacted``.
Redaction is deterministic and idempotent, so a recorded (already redacted) request and a live
request redacted at replay time produce the same matching key even when the secret changed.
Nothing here mutates its input: what the agent sees is never touched.

Beside it: ``_scrub_patterns`` (what looks secret), ``_edits`` (replacing text, and mapping a
stream's edits back onto its chunks), ``_scrub_spans`` (finished spans, in front of every
exporter).
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from . import _scrub_patterns as patterns
from ._body import encode_body
from ._edits import (
    MARKER,
    Edit,
    apply,
    byte_edits,
    chunk_bytes,
    diff_edits,
    encode_chunk,
    merge,
    splice,
)
from ._scrub_patterns import FORMATS, Format, find_pairs, format_spans, is_secret_key

logger = logging.getLogger("agenttrace")

_QUOTED_MARKER = f'"{MARKER}"'


_FIELD_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9_\-]{0,20}) +\S")

EventFilter = Callable[[dict[str, Any]], "dict[str, Any] | None"]

# How a key's value is treated (see _Walk.key_mode).
_DEFAULT, _CONTENT, _KEPT, _SCRUB = 0, 1, 2, 3


@dataclass(frozen=True)
class Rules:
    """What to redact in one context (the innermost step's filters plus its parents')."""

    fields: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()
    callables: tuple[EventFilter, ...] = ()
    # key -> matches; the same few keys recur in every event of a step
    _keys: dict[str, bool] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def match_key(self, key: str) -> bool:
        """A field name (any case) or a regex matching the whole key."""
        hit = self._keys.get(key)
        if hit is None:
            hit = _field(key) in self.fields or any(p.fullmatch(key) for p in self.patterns)
            if len(self._keys) > 10000:
                self._keys.clear()
            self._keys[key] = hit
        return hit

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
        found: list[re.Pattern[str]] = []
        callables: list[EventFilter] = []
        for item in spec:
            if isinstance(item, re.Pattern):
                found.append(item)
            elif callable(item):
                callables.append(item)
            elif isinstance(item, str) and _FIELD_NAME.match(item):
                fields.add(_field(item))
            elif isinstance(item, str):
                try:
                    found.append(re.compile(item, re.IGNORECASE))
                except re.error as exc:
                    raise ValueError(
                        f"step filter {item!r} is not a field name nor a valid regex: {exc}"
                    ) from None
            else:
                raise TypeError(
                    f"step filter entries must be strings, regexes or callables, not {item!r}"
                )
        return cls(frozenset(fields), tuple(found), tuple(callables))

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


def _field(name: str) -> str:
    """Field names match in any case and with ``-`` for ``_`` (``user_id`` ~ ``User-Id``)."""
    return name.lower().replace("-", "_")


def _scrubbable(value: Any) -> bool:
    """Worth replacing under a secret key (None, booleans and "" reveal nothing)."""
    if value is None or isinstance(value, bool) or value == "" or value == MARKER:
        return False
    return not (isinstance(value, (dict, list)) and not value)


# -- the walk over one event / payload ----------------------------------------------------------


class _Walk:
    """One redaction pass: the rules in force, and the paths it replaced."""

    def __init__(self, redactor: Redactor, rules: Rules) -> None:
        self.rules = rules
        self.keep = redactor.keep
        self.masks = redactor.masks + rules.patterns
        self.mask_fn = redactor.mask_fn
        self.stems = tuple(sorted({v for f in rules.fields for v in (f, f.replace("_", "-"))}))
        self.verdict = redactor.verdict
        # Only default scrubbing applies: the quick "anything suspicious?" checks are enough.
        self.plain = not (self.masks or self.mask_fn or self.stems)
        self.paths: list[str] = []

    # keys

    def rule_key(self, key: str) -> bool:
        return self.rules.match_key(key)

    def key_mode(self, key: Any, mode: int) -> int:
        key = key if type(key) is str else str(key)
        if self.rules is not EMPTY and self.rule_key(key):
            return _SCRUB
        if mode == _KEPT:
            return _KEPT
        verdict = self.verdict(key)
        return _CONTENT if mode == _CONTENT and verdict != _KEPT else verdict

    def text_key(self, key: str) -> bool:
        """A key found in text (``"key": v`` / ``key=v``) whose value must go."""
        if self.rules is not EMPTY and self.rule_key(key):
            return True
        return key.lower() not in self.keep and is_secret_key(key)

    # strings

    def edits(
        self, text: str, *, pairs: bool, defaults: bool, formats: Sequence[Format]
    ) -> list[Edit]:
        found: list[Edit] = []
        if defaults and formats:
            found += [(a, b, MARKER) for a, b in format_spans(text, formats)]
        if pairs:
            for pair in find_pairs(text, self.text_key, self.stems):
                if text[pair.start : pair.end] != MARKER:
                    new = _QUOTED_MARKER if pair.json_bare else MARKER
                    found.append((pair.start, pair.end, new))
        for mask in self.masks:
            found += [
                (m.start(), m.end(), MARKER) for m in mask.finditer(text) if m.end() > m.start()
            ]
        return merge(text, found)

    def call_mask(self, text: str) -> str:
        if self.mask_fn is None:
            return text
        try:
            out = self.mask_fn(text)
            if not isinstance(out, str):
                raise TypeError(f"the mask callable returned {type(out).__name__}, not str")
            return out
        except Exception:
            _log_once("mask", "agenttrace: the mask callable failed; the string is redacted whole")
            return MARKER

    def text(
        self,
        value: str,
        path: str,
        *,
        pairs: bool = True,
        defaults: bool = True,
        formats: Sequence[Format] = FORMATS,
    ) -> str:
        if self.plain and (not (pairs or (defaults and formats)) or not patterns.suspicious(value)):
            return value  # the common case: nothing can apply
        edits = self.edits(value, pairs=pairs, defaults=defaults, formats=formats)
        new = self.call_mask(apply(value, edits) if edits else value)
        if new != value:
            self.paths.append(path)
        return new

    # JSON-like values

    def json(self, value: Any, path: str, *, pairs: bool = True) -> Any:
        """Redact a JSON-like value; returns the very same object when nothing changes."""
        blob = _blob(value)
        if blob is not None and self.plain and not patterns.suspicious(blob):
            return value
        formats = FORMATS if blob is None else patterns.present_formats(blob)
        if (
            blob is not None
            and not formats
            and not self.masks
            and self.mask_fn is None
            and not find_pairs(blob, self.text_key, self.stems)
        ):
            return value  # the common case: nothing in it can be secret, no walk needed
        return self.value(value, path, _DEFAULT, pairs, formats)

    def value(
        self, value: Any, path: str, mode: int, pairs: bool, formats: Sequence[Format]
    ) -> Any:
        if isinstance(value, str):
            return self.text(value, path, pairs=pairs, defaults=mode != _KEPT, formats=formats)
        if isinstance(value, dict):
            return self.mapping(value, path, mode, pairs, formats)
        if isinstance(value, (list, tuple)):
            return self.sequence(value, path, mode, pairs, formats)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        # Not JSON (a dataclass, a model): it would be stored as its repr; scrub that text.
        return self.text(repr(value), path, pairs=True, defaults=mode != _KEPT)

    def mapping(
        self, value: dict, path: str, mode: int, pairs: bool, formats: Sequence[Format]
    ) -> dict:
        out: dict | None = None
        schema = path.rsplit(".", 1)[-1].lower() in patterns.SCHEMA_KEYS
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            kmode = self.key_mode(key, mode)
            if (
                kmode == _SCRUB
                and schema
                and isinstance(item, dict)
                and not self.rule_key(str(key))
            ):
                kmode = mode  # a schema property named "password" is a definition, not a secret
            if kmode == _SCRUB:
                new = MARKER if _scrubbable(item) else item
                if new is not item:
                    self.paths.append(sub)
            else:
                new = self.value(item, sub, kmode, pairs, formats)
            if new is not item:
                if out is None:
                    out = dict(value)
                out[key] = new
        return value if out is None else out

    def sequence(
        self, value: list | tuple, path: str, mode: int, pairs: bool, formats: Sequence[Format]
    ) -> list | tuple:
        out: list | None = None
        for i, item in enumerate(value):
            new = self.value(item, f"{path}[{i}]", mode, pairs, formats)
            if new is not item:
                if out is None:
                    out = list(value)
                out[i] = new
        return value if out is None else out

    # HTTP pieces

    def url(self, url: str, path: str) -> str:
        """Query parameters by key name, everything else as text; untouched parts keep their
        exact encoding."""
        if self.plain and not patterns.suspicious(url):
            return url
        head, mark, rest = url.partition("?")
        query, hash_, fragment = rest.partition("#")
        if not mark:
            head, hash_, fragment = url.partition("#")
        new_head = self.text(head, path)
        new_query = self.query(query, f"{path}.query") if query else query
        new_fragment = self.text(fragment, f"{path}.fragment") if fragment else fragment
        if (new_head, new_query, new_fragment) == (head, query, fragment):
            return url
        return new_head + mark + new_query + hash_ + new_fragment

    def query(self, query: str, path: str) -> str:
        """A query string or form body, key by key."""
        pairs = parse_qsl(query, keep_blank_values=True)
        formats = patterns.present_formats(" ".join(v for _, v in pairs))
        out, changed = [], False
        for key, value in pairs:
            mode = self.key_mode(key, _DEFAULT)
            if mode == _SCRUB:
                new = MARKER if _scrubbable(value) else value
                if new != value:
                    self.paths.append(f"{path}.{key}")
            else:
                new = self.text(
                    value, f"{path}.{key}", pairs=False, defaults=mode != _KEPT, formats=formats
                )
            changed = changed or new != value
            out.append((key, new))
        return urlencode(out, safe="[]") if changed else query

    def headers(self, headers: list, where: str) -> list:
        modes = [self.key_mode(name, _DEFAULT) for name, _ in headers]
        # Formats and pairs are looked for in the headers that are not scrubbed whole anyway.
        joined = "\n".join(
            str(v) for (_, v), mode in zip(headers, modes, strict=True) if mode != _SCRUB
        )
        formats = patterns.present_formats(joined)
        pairs = bool(find_pairs(joined, self.text_key, self.stems))
        special = _SCRUB in modes or any(n.lower() in patterns.URL_HEADERS for n, _ in headers)
        if not (special or formats or pairs or self.masks or self.mask_fn):
            return headers  # the common case: nothing to look at header by header
        out, changed = [], False
        for (name, value), mode in zip(headers, modes, strict=True):
            new = self.header(name, value, mode, where, pairs, formats)
            changed = changed or new != value
            out.append([name, new])
        return out if changed else headers

    def header(
        self, name: str, value: str, mode: int, where: str, pairs: bool, formats: Sequence[Format]
    ) -> str:
        lname = name.lower()
        path = f"{where}.headers.{lname}"
        if mode == _SCRUB:
            new = _scrub_header(lname, value)
            if new != value:
                self.paths.append(path)
            return new
        if lname in patterns.URL_HEADERS:
            return self.url(value, path)
        return self.text(value, path, pairs=pairs, defaults=mode != _KEPT, formats=formats)

    def body(self, body: dict[str, Any], path: str, headers: list) -> dict[str, Any]:
        if "json" in body:
            new = self.json(body["json"], path)
            return body if new is body["json"] else {**body, "json": new}
        if "text" in body:
            text = body["text"]
            ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
            if "x-www-form-urlencoded" in ctype.lower():
                new = self.query(text, path)
            else:
                new = self.text(text, path)
            return body if new == text else {**body, "text": new}
        return body  # binary (or still compressed in a coding we cannot decode): left as is

    def chunks(self, chunks: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
        """Scrub a streamed body as one text, then map the result back onto its chunks: a
        secret split across two chunks is caught, and the chunks keep their count and timing."""
        texts = [c.get("text") for c in chunks]
        if all(isinstance(t, str) for t in texts):
            text, raw = "".join(texts), texts  # the usual case: offsets are character offsets
        else:  # a binary chunk (a character split between chunks): work on the bytes
            raw = [chunk_bytes(c) for c in chunks]
            text = b"".join(raw).decode("utf-8", "surrogateescape")
        edits = self.edits(text, pairs=True, defaults=True, formats=FORMATS)
        if self.mask_fn is not None:
            masked = self.call_mask(apply(text, edits))
            edits = diff_edits(text, masked) if masked != text else []
        if not edits:
            return chunks
        if raw is texts:
            parts = splice(text, [len(t) for t in texts], edits)
        else:
            parts = splice(b"".join(raw), [len(r) for r in raw], byte_edits(text, edits))
        out = []
        for i, (chunk, old, new) in enumerate(zip(chunks, raw, parts, strict=True)):
            if new == old:
                out.append(chunk)
                continue
            self.paths.append(f"{path}[{i}]")
            kept = {k: v for k, v in chunk.items() if k not in ("text", "base64")}
            out.append({**kept, **(encode_chunk(new) if isinstance(new, bytes) else {"text": new})})
        return out

    def message(self, message: dict[str, Any], where: str) -> dict[str, Any]:
        out = dict(message)
        if "headers" in message:
            out["headers"] = self.headers(message["headers"], where)
        if "url" in message:
            out["url"] = self.url(message["url"], f"{where}.url")
        if message.get("body") is not None:
            body = message["body"]
            if where == "request" and "base64" in body:
                body = _decoded_upload(body, message.get("headers", []))
            out["body"] = self.body(body, f"{where}.body", message.get("headers", []))
        if message.get("chunks"):
            out["chunks"] = self.chunks(message["chunks"], f"{where}.chunks")
        return out


def _message(walk: _Walk, message: dict[str, Any], path: str) -> dict[str, Any]:
    """One stored websocket frame or MCP message (text as text, JSON as JSON; binary as is)."""
    if "text" in message:
        new = walk.text(message["text"], path)
        return message if new == message["text"] else {**message, "text": new}
    if "json" in message:
        new = walk.json(message["json"], path)
        return message if new is message["json"] else {**message, "json": new}
    return message


def _scrub_header(lname: str, value: str) -> str:
    """A credential header's value, keeping what is not secret: the auth scheme, cookie names
    and Set-Cookie attributes (useful when reading a trace, harmless to keep)."""
    if not value or value == MARKER:
        return value
    if lname == "cookie":
        return "; ".join(_cookie_pair(p.strip()) for p in value.split(";") if p.strip())
    if lname == "set-cookie":
        first, sep, attributes = value.partition(";")
        return _cookie_pair(first.strip()) + sep + attributes
    scheme = _SCHEME.match(value)
    if scheme:
        return f"{scheme.group(1)} {MARKER}"
    return MARKER


def _cookie_pair(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    return f"{name}={MARKER}" if eq else MARKER


def _decoded_upload(body: dict[str, Any], headers: list) -> dict[str, Any]:
    """A compressed upload (``Content-Encoding: gzip``), stored decoded so that it can be
    scrubbed: a request is never sent again, so its stored bytes need not be the wire bytes."""
    encoding = (_header(headers, "content-encoding") or "").strip().lower()
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
    if encoding not in wbits:
        return body
    try:
        data = zlib.decompress(base64.b64decode(body["base64"]), wbits[encoding])
    except (zlib.error, ValueError):
        return body
    decoded = encode_body(data, _header(headers, "content-type")) or {"text": ""}
    return {**decoded, "decoded": encoding}


def _header(headers: list, name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def _blob(value: Any) -> str | None:
    try:
        return json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        return None  # circular or odd: the walk looks at everything


_logged: set[str] = set()


def _log_once(key: str, message: str) -> None:
    if key not in _logged:
        _logged.add(key)
        logger.exception(message)


# -- the public face ---------------------------------------------------------------------------


class Redactor:
    """Applies default scrubbing, step rules and global masks to events, payloads and spans."""

    def __init__(
        self, masks: Iterable[str] | Callable[[str], str] = (), keep: Iterable[str] = ()
    ) -> None:
        self.mask_fn: Callable[[str], str] | None = None
        self.masks: tuple[re.Pattern[str], ...] = ()
        if callable(masks):
            self.mask_fn = masks
        else:
            self.masks = tuple(m if isinstance(m, re.Pattern) else re.compile(m) for m in masks)
        self.keep = frozenset(k.lower() for k in keep)
        self._verdicts: dict[str, int] = {}
        self._attribute_keys: dict[str, bool] = {}
        self.clean_attributes: set[tuple[str, str]] = set()  # span attributes seen unchanged
        self._plain = not (self.masks or self.mask_fn)  # only default scrubbing applies

    def verdict(self, key: str) -> int:
        """What default scrubbing does with a key (cached: the same few keys recur endlessly)."""
        verdict = self._verdicts.get(key)
        if verdict is None:
            lower = key.lower()
            if lower in self.keep:
                verdict = _KEPT
            elif lower in patterns.CONTENT_KEYS:
                verdict = _CONTENT
            else:
                verdict = _SCRUB if is_secret_key(key) else _DEFAULT
            if len(self._verdicts) > 20000:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    @classmethod
    def from_settings(cls, settings: Any) -> Redactor:
        """The redactor for resolved settings; says once that ``scrub_keep`` weakens scrubbing."""
        keep = tuple(getattr(settings, "scrub_keep", ()) or ())
        if keep:
            source = getattr(settings, "sources", {}).get("scrub_keep", "settings")
            logger.warning(
                "agenttrace: default scrubbing is OFF for %s (scrub_keep, from %s): their values "
                "are recorded in clear",
                ", ".join(keep),
                source,
            )
        return cls(settings.mask, keep)

    def payload(self, value: Any, rules: Rules) -> tuple[Any, list[str]]:
        """Redact a step input or result (any JSON-like value)."""
        walk = _Walk(self, rules)
        try:
            return walk.json(value, ""), walk.paths
        except Exception:
            _log_once("payload", "agenttrace: could not redact a step payload; it is dropped")
            return MARKER, ["*"]

    def request(self, request: dict[str, Any], rules: Rules) -> tuple[dict[str, Any], list[str]]:
        """Redact a live request exactly as ``event`` would: the replay matching key."""
        walk = _Walk(self, rules)
        try:
            out = walk.message(request, "request")
        except Exception:
            _log_once("request", "agenttrace: could not redact a request")
            return _stub_request(request, url=MARKER), ["*"]
        for fn in rules.callables:  # as in ``event``, so a filtered call still matches
            result = _call_filter(fn, {"kind": "http", "request": out, "redacted": walk.paths})
            if result is None:
                return _stub_request(out), ["*"]
            out = result.get("request", out)
        return out, walk.paths

    def event(
        self, event: dict[str, Any], rules: Rules, *, request_done: bool = False
    ) -> dict[str, Any] | None:
        """A redacted copy of a complete event, with ``redacted`` paths filled in.

        ``request_done``: the request was already redacted by :meth:`request` (the runtime does
        that once per call, for the replay key) and its paths are in ``event["redacted"]``.
        """
        walk = _Walk(self, rules)
        try:
            out = self._event(event, walk, request_done)
        except Exception:
            _log_once("event", "agenttrace: could not redact an event; only its outline is kept")
            return stub(event, url=MARKER)
        for fn in rules.callables:
            result = _call_filter(fn, out)
            if result is None:
                return stub(out)
            out = result
        return out

    def _event(self, event: dict[str, Any], walk: _Walk, request_done: bool) -> dict[str, Any]:
        if event.get("kind", "http") != "http":
            return self._capture_event(event, walk)
        out = dict(event)
        if not request_done:
            out["request"] = walk.message(event["request"], "request")
        if event.get("response") is not None:
            out["response"] = walk.message(event["response"], "response")
        if event.get("error") is not None:
            out["error"] = walk.value(event["error"], "error", _DEFAULT, True, FORMATS)
        out["redacted"] = sorted(set(event.get("redacted", []) + walk.paths))
        return out

    def _capture_event(self, event: dict[str, Any], walk: _Walk) -> dict[str, Any]:
        """A websocket, MCP or tool event: handshake, every message, arguments and results."""
        out = dict(event)
        for where in ("request", "response"):
            if event.get(where) is not None:
                out[where] = walk.message(event[where], where)
        for key in ("server", "args", "result", "items"):
            if key in event:
                out[key] = walk.json(event[key], key)
        for key in ("frames", "messages"):
            if event.get(key):
                out[key] = [_message(walk, m, f"{key}[{i}]") for i, m in enumerate(event[key])]
        if event.get("error") is not None:
            out["error"] = walk.value(event["error"], "error", _DEFAULT, True, FORMATS)
        out["redacted"] = sorted(set(event.get("redacted", []) + walk.paths))
        return out

    # for spans (see _scrub_spans)

    def text(self, value: str) -> str:
        """Any free text (an exception message, a span attribute)."""
        if self._plain and not patterns.suspicious(value):
            return value  # every span attribute goes through here: skip the walk's set-up
        return _Walk(self, EMPTY).text(value, "")

    def url(self, value: str) -> str:
        if self._plain and not patterns.suspicious(value):
            return value
        return _Walk(self, EMPTY).url(value, "")

    def keeps(self, key: str) -> bool:
        return key.lower() in self.keep

    def secret_attribute(self, key: str) -> bool:
        """Whether a span attribute of this name holds a credential (cached per name)."""
        secret = self._attribute_keys.get(key)
        if secret is None:
            secret = not self.keeps(key) and is_secret_key(key)
            if len(self._attribute_keys) > 10000:
                self._attribute_keys.clear()
            self._attribute_keys[key] = secret
        return secret


def _call_filter(fn: EventFilter, event: dict[str, Any]) -> dict[str, Any] | None:
    """A step filter callable on a copy (it may mutate it); failing means dropping (fail closed)."""
    try:
        result = fn(copy.deepcopy(event))
    except Exception:
        _log_once("filter", "agenttrace: a step filter callable failed; its event is dropped")
        return None
    return result if isinstance(result, dict) else None


def _stub_request(request: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    return {"method": request.get("method", "GET"), "url": url or request.get("url", "")}


def stub(event: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """What remains of an event whose step filter dropped it: enough to replay its shape."""
    kept = {
        k: event[k]
        for k in ("seq", "kind", "step", "span_id", "duration_ms", "client", "name", "in_tool")
        if k in event
    }
    if "request" in event:
        kept["request"] = _stub_request(event["request"], url)
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
