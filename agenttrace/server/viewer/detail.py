"""One event's detail pane: what was asked and answered, laid out for reading.

Bodies are pretty-printed (JSON indented, binary as a hex dump), a streamed response is
assembled (its SSE text, the model's final answer, chunk count and timing), and each part is cut
at ``MAX_INLINE`` characters with a download of the whole (``part_content``). Tool, MCP and
websocket events are laid out from their fields; any other kind, and any field this version does
not know, is in the raw event at the bottom. Nothing here raises on a malformed event: what
cannot be laid out becomes a note beside the raw JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ... import _sse
from ..._body import decode_body, json_value
from ..._console import duration, tokens, usd
from ..._genai import parse_call
from ..._outline import EventLine
from ...capture.messages import session_key

logger = logging.getLogger("agenttrace.server")

MAX_INLINE = 50_000  # characters of one part shown in the page
MAX_LISTED = 200  # chunks, frames or messages listed one by one
_HEX_PREVIEW = 512  # bytes of a binary body shown as hex


@dataclass
class Block:
    """A body or value, ready to show: ``text`` is cut to MAX_INLINE characters."""

    title: str
    text: str
    part: str | None = None  # name of its full download; None when there is nothing more
    size: int = 0  # characters (or bytes, for binary) of the whole
    truncated: bool = False
    note: str | None = None  # "binary: 1,234 bytes", "not JSON"...


@dataclass
class Item:
    """One chunk, frame or message of an event, in order."""

    label: str  # "→ send", "chunk 3"
    at_ms: float | None
    block: Block


@dataclass
class Section:
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    items_name: str = "items"  # what the items are: "chunks", "messages", "frames"
    items_open: bool = False  # listed open: they are what the event is (not a stream's pieces)
    more_items: int = 0  # items not listed (past MAX_LISTED)


@dataclass
class Detail:
    seq: int
    kind: str
    label: str
    facts: list[tuple[str, str]]
    redacted: list[str]
    sections: list[Section]
    raw: Block
    error: str | None = None  # the call's error (type: message)
    note: str | None = None  # why part of it could not be laid out


def event_detail(event: Mapping[str, Any], line: EventLine) -> Detail:
    """The pane of one event (``line``: its outline summary)."""
    detail = Detail(
        seq=line.seq,
        kind=line.kind,
        label=line.label,
        facts=_facts(line, event),
        redacted=[str(p) for p in event.get("redacted") or () if p is not None]
        if isinstance(event.get("redacted"), list)
        else [],
        sections=[],
        raw=_value_block("Raw event", _plain(event), "event"),
    )
    try:
        detail.error = _error_text(event.get("error"))
        detail.sections = _LAYOUTS.get(line.kind, _other)(event)
    except Exception as exc:  # a malformed event: what we could read, and the raw JSON
        logger.debug("agenttrace viewer: cannot lay out event %s", line.seq, exc_info=True)
        detail.note = (
            f"this event could not be laid out ({type(exc).__name__}: {exc}); its raw JSON is below"
        )
    return detail


def _facts(line: EventLine, event: Mapping[str, Any]) -> list[tuple[str, str]]:
    facts = [("kind", line.kind)]
    if line.step:
        facts.append(("step", line.step))
    if line.status:
        facts.append(("status", line.status))
    if line.duration_ms is not None:
        facts.append(("duration", duration(line.duration_ms)))
    if isinstance(event.get("client"), str):
        facts.append(("client", event["client"]))
    if line.llm:
        facts.append(("LLM call", line.llm))
    if line.usage is not None:
        facts.append(("tokens", tokens(line.usage)))
    if line.cost_usd is not None:
        facts.append(("cost", usd(line.cost_usd)))
    if line.detail:
        facts.append(("summary", line.detail))
    return facts


def _error_text(error: Any) -> str | None:
    if isinstance(error, Mapping):
        kind = error.get("type") or "error"
        return f"{kind}: {error['message']}" if error.get("message") else str(kind)
    if isinstance(error, str) and error:
        return error
    return None


# -- kinds ----------------------------------------------------------------------------------------


def _http(event: Mapping[str, Any]) -> list[Section]:
    request = _mapping(event.get("request"))
    asked = Section(
        "Request",
        facts=[("", f"{request.get('method', '?')} {request.get('url', '?')}")],
        headers=_headers(request.get("headers")),
        blocks=[_body_block("Body", request.get("body"), "request")],
    )
    sections = [asked]
    response = event.get("response")
    if isinstance(response, Mapping):
        got = Section(
            "Response",
            facts=[("status", str(response.get("status", "?")))],
            headers=_headers(response.get("headers")),
        )
        if isinstance(response.get("chunks"), list):
            _stream(got, response)
        else:
            got.blocks.append(_body_block("Body", response.get("body"), "response"))
        sections.append(got)
    answer = _llm_answer(event)
    if answer is not None:  # what a reader looks for first
        sections.insert(0, answer)
    return sections


def _stream(section: Section, response: Mapping[str, Any]) -> None:
    chunks = [c for c in response["chunks"] if isinstance(c, Mapping)]
    times = [c["at_ms"] for c in chunks if isinstance(c.get("at_ms"), (int, float))]
    timing = f"{len(chunks)} chunks"
    if times:
        timing += f", first at {duration(times[0])}, last at {duration(times[-1])}"
    section.facts.append(("stream", timing))
    text = _sse.stream_text({"chunks": chunks})  # what is not a stored chunk is left out
    events = sum(1 for _ in _sse.events(text))
    if events:
        section.facts.append(("server-sent events", str(events)))
    section.blocks.append(_text_block("Stream as received (chunks joined)", text, "stream"))
    _list(section, "chunks as read", chunks, None, label=lambda n: f"chunk {n}")


def _llm_answer(event: Mapping[str, Any]) -> Section | None:
    """The model's answer as text (a stream assembled), with its tool calls."""
    call = parse_call(event, content=True)
    if call is None or not call.output_messages:
        return None
    texts, calls = [], []
    for message in call.output_messages:
        for part in message.get("parts") or ():
            if part.get("type") == "text":
                texts.append(str(part.get("content", "")))
            elif part.get("type") == "tool_call":
                arguments = json.dumps(part.get("arguments"), ensure_ascii=False)
                calls.append(f"{part.get('name')}({arguments})")
            else:
                texts.append(json.dumps(part, ensure_ascii=False))
    section = Section("Answer" + (" (stream assembled)" if call.streamed else ""))
    if call.finish_reasons:
        section.facts.append(("finish", ", ".join(call.finish_reasons)))
    if texts:
        section.blocks.append(_text_block("Text", "".join(texts), None))
    if calls:
        section.blocks.append(_text_block("Tool calls", "\n".join(calls), None))
    return section


def _tool(event: Mapping[str, Any]) -> list[Section]:
    section = Section("Tool call", facts=[("name", str(event.get("name", "?")))])
    section.blocks.append(_value_block("Arguments", event.get("args"), "args"))
    if "result" in event:
        section.blocks.append(_value_block("Result", event.get("result"), "result"))
    if "items" in event:  # a generator: what it yielded, in order
        section.blocks.append(_value_block("Yielded", event.get("items"), "items"))
    if event.get("unrecordable"):
        section.facts.append(("not recorded", str(event["unrecordable"])))
    return [section]


def _mcp(event: Mapping[str, Any]) -> list[Section]:
    facts = [("transport", str(event["transport"]))] if event.get("transport") else []
    server = event.get("server")
    if isinstance(server, Mapping):  # its URL, or the command line that started it
        facts.append(("server", session_key("mcp", dict(event))))
    elif server:
        facts.append(("server", str(server)))
    section = Section("MCP session", facts=facts)
    messages = [m for m in event.get("messages") or () if isinstance(m, Mapping)]
    section.facts.append(("messages", str(len(messages))))
    _list(section, "messages", messages, "messages")
    section.items_open = True
    return [section]


def _websocket(event: Mapping[str, Any]) -> list[Section]:
    request = _mapping(event.get("request"))
    section = Section(
        "WebSocket",
        facts=[("url", str(request.get("url") or event.get("url") or "?"))],
        headers=_headers(request.get("headers")),
    )
    handshake = event.get("response")
    if isinstance(handshake, Mapping) and handshake.get("status") is not None:
        section.facts.append(("handshake", str(handshake["status"])))
    frames = [f for f in event.get("frames") or () if isinstance(f, Mapping)]
    section.facts.append(("frames", str(len(frames))))
    close = event.get("close")
    if close is not None:
        known = close if isinstance(close, Mapping) else {"code": close}
        closed = str(known.get("code"))
        if known.get("reason"):
            closed += f" ({known['reason']})"
        if known.get("by"):
            closed += f", by the {known['by']}"
        section.facts.append(("closed", closed))
    _list(section, "frames", frames, "frames")
    section.items_open = True
    return [section]


def _list(
    section: Section,
    name: str,
    items: list[Mapping[str, Any]],
    part: str | None,
    label: Callable[[int], str] | None = None,
) -> None:
    """Chunks, messages or frames (``at_ms``, ``dir``, a body or ``json``) one by one, up to
    MAX_LISTED; past that, all of them as one block with its download (``part``)."""
    for number, item in enumerate(items[:MAX_LISTED], 1):
        if "json" in item:
            content = _value_block("", item["json"], None)
        else:
            content = _body_block("", item, None)
        shown = label(number) if label else _direction(item.get("dir"))
        section.items.append(Item(shown, _at(item), content))
    section.items_name = name
    section.more_items = max(len(items) - MAX_LISTED, 0)
    if section.more_items and part is not None:
        section.blocks.append(_value_block(f"All {len(items)} {name}", items, part))


def _entropy(event: Mapping[str, Any]) -> list[Section]:
    section = Section("Entropy", facts=[("source", str(event.get("source", "?")))])
    if isinstance(event.get("data"), str):
        section.blocks.append(_body_block("Bytes", {"base64": event["data"]}, None))
    return [section]


def _other(event: Mapping[str, Any]) -> list[Section]:
    """A kind without a layout of its own (DNS, clock, a kind from a newer version)."""
    fields = {k: v for k, v in event.items() if k not in _BOOKKEEPING}
    return [
        Section(
            str(event.get("kind") or "event").capitalize(),
            blocks=[_value_block("Fields", fields, None)],
        )
    ]


_BOOKKEEPING = frozenset({"seq", "kind", "step", "span_id", "duration_ms", "redacted", "client"})
_LAYOUTS = {"http": _http, "tool": _tool, "mcp": _mcp, "websocket": _websocket, "entropy": _entropy}


# -- blocks ---------------------------------------------------------------------------------------


def _body_block(title: str, body: Any, part: str | None) -> Block:
    """A stored body ({"json"}, {"text"} or {"base64"}, a chunk or a frame) for reading."""
    if body is None:
        return Block(title, "", note="no body")
    if not isinstance(body, Mapping):
        return _value_block(title, body, part, note="not a stored body")
    if "base64" in body:
        try:
            data = base64.b64decode(str(body["base64"]), validate=True)
        except (binascii.Error, ValueError):
            return _text_block(title, str(body["base64"]), part, note="base64 that does not decode")
        shown = _hexdump(data[:_HEX_PREVIEW])
        note = f"binary: {len(data):,} bytes"
        if len(data) > _HEX_PREVIEW:
            note += f"; the first {_HEX_PREVIEW} as hex"
        return Block(title, shown, part, len(data), len(data) > _HEX_PREVIEW, note)
    value = json_value(body, _NOT_JSON)
    if value is not _NOT_JSON:
        return _value_block(title, value, part)
    if "text" in body:
        return _text_block(title, str(body["text"]), part)
    return _value_block(title, _plain(body), part, note="not a stored body")


_NOT_JSON = object()


def _value_block(title: str, value: Any, part: str | None, note: str | None = None) -> Block:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        text = repr(value)
    return _text_block(title, text, part, note)


def _text_block(title: str, text: str, part: str | None, note: str | None = None) -> Block:
    cut = len(text) > MAX_INLINE
    return Block(
        title, text[:MAX_INLINE] if cut else text, part if cut else None, len(text), cut, note
    )


def _hexdump(data: bytes) -> str:
    lines = []
    for offset in range(0, len(data), 16):
        row = data[offset : offset + 16]
        shown = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{offset:08x}  {row.hex(' '):<47}  {shown}")
    return "\n".join(lines)


def _headers(headers: Any) -> list[tuple[str, str]]:
    out = []
    for pair in headers if isinstance(headers, list) else ():
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            out.append((str(pair[0]), str(pair[1])))
    return out


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _direction(value: Any) -> str:
    return {"send": "→ sent", "recv": "← received"}.get(str(value), str(value or "?"))


def _at(item: Mapping[str, Any]) -> float | None:
    at = item.get("at_ms")
    return at if isinstance(at, (int, float)) and not isinstance(at, bool) else None


# -- downloads ------------------------------------------------------------------------------------

_MEDIA_JSON = "application/json"


def part_content(event: Mapping[str, Any], part: str) -> tuple[bytes, str, str] | None:
    """The whole of one part of an event as (bytes, media type, file suffix), for its download
    link; None for a part the event does not have."""
    request = _mapping(event.get("request"))
    response = _mapping(event.get("response"))
    if part == "event":
        return _json_bytes(_plain(event)), _MEDIA_JSON, "json"
    if part in ("request", "response"):
        body = (request if part == "request" else response).get("body")
        if not isinstance(body, Mapping):
            return None
        return _stored(body)
    if part == "stream" and isinstance(response.get("chunks"), list):
        return _sse.stream_bytes(response), "text/plain", "txt"
    if part in ("args", "result", "items", "messages", "frames") and part in event:
        return _json_bytes(event[part]), _MEDIA_JSON, "json"
    return None


def _stored(body: Mapping[str, Any]) -> tuple[bytes, str, str] | None:
    try:
        data = decode_body(dict(body))
    except (binascii.Error, ValueError, TypeError, AttributeError):
        return None
    if "json" in body:
        return data, _MEDIA_JSON, "json"
    if "text" in body:
        return data, "text/plain", "txt"
    return data, "application/octet-stream", "bin"


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str).encode("utf-8")
