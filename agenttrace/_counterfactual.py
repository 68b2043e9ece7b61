"""Counterfactual replay: "what would the agent have done if this answer had been different?"

``agenttrace replay --edit SEQ=FILE`` replaces event SEQ's recorded answer with the JSON in FILE
and replays the rest as usual: calls before it are served as recorded, calls after it wherever
they still match, and whatever no longer matches follows the governance level. This module only
rewrites the trace document; the Player serves the result like any recording.

What an edit replaces:
- an HTTP answer: the response body. A streamed response (SSE) is served as a stream again: a
  JSON list becomes one ``data:`` event per item (an item ``{"event": E, "data": D}`` a named
  event), an OpenAI ``chat.completion`` object becomes the chunks the API would have streamed;
  the recorded chunk timing is kept where there are as many chunks.
- a tool call: its result.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._body import encode_body, header

EDITABLE = ("http", "tool")


class EditError(ValueError):
    """An edit that cannot be applied: the message names the problem and the fix."""


def parse_edit(spec: str) -> tuple[int, Any, str]:
    """``SEQ=FILE`` as (seq, the file's JSON value, the file's name)."""
    seq_text, sep, path = spec.partition("=")
    if not sep or not path:
        raise EditError(f"--edit {spec!r}: expected SEQ=FILE, e.g. --edit 3=answer.json")
    try:
        seq = int(seq_text)
    except ValueError:
        raise EditError(
            f"--edit {spec!r}: SEQ must be an event number (see `agenttrace show`)"
        ) from None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EditError(f"--edit {spec!r}: cannot read {path}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EditError(
            f"--edit {spec!r}: {path} is not JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
            "write the answer to serve as JSON"
        ) from None
    return seq, value, path


def apply_edits(document: dict[str, Any], edits: Iterable[tuple[int, Any, str]]) -> dict[str, Any]:
    """A copy of ``document`` whose events ``seq`` answer with the edited values."""
    edited = copy.deepcopy(document)
    events = {e.get("seq"): e for e in edited.get("events", [])}
    for seq, value, source in edits:
        event = events.get(seq)
        if event is None:
            known = sorted(s for s, e in events.items() if e.get("kind") in EDITABLE)
            raise EditError(
                f"--edit {seq}: the trace has no event #{seq}; answerable events: "
                + (", ".join(f"#{s}" for s in known[:20]) or "none")
            )
        kind = event.get("kind")
        if kind == "http":
            _edit_http(event, value)
        elif kind == "tool":
            event.pop("error", None)
            event["result"] = value
        else:
            raise EditError(
                f"--edit {seq}: event #{seq} is a {kind} event, not an answer to edit; "
                "edit an HTTP call or a tool call (see `agenttrace show`)"
            )
        event["edited"] = source
    return edited


def _edit_http(event: dict[str, Any], value: Any) -> None:
    response = event.get("response")
    if response is None:  # a recorded error becomes a successful answer
        response = event["response"] = {
            "status": 200,
            "headers": [["Content-Type", "application/json"]],
        }
    event.pop("error", None)
    headers = response.get("headers") or []
    response["headers"] = [h for h in headers if h[0].lower() != "content-encoding"]
    response.pop("body_encoding", None)
    recorded_chunks = response.pop("chunks", None)
    if recorded_chunks is not None or "event-stream" in (header(headers, "content-type") or ""):
        response.pop("body", None)
        response["chunks"] = _sse_chunks(value, recorded_chunks or [])
    else:
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        response["body"] = encode_body(data, "application/json")
    event["redacted"] = [p for p in event.get("redacted", []) if p.startswith("request")]


def _sse_chunks(value: Any, recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(value, dict) and value.get("object") == "chat.completion":
        items: list[Any] = list(_completion_chunks(value))
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    texts = []
    for item in items:
        if isinstance(item, dict) and set(item) == {"event", "data"}:
            texts.append(f"event: {item['event']}\ndata: {json.dumps(item['data'])}\n\n")
        else:
            texts.append(f"data: {json.dumps(item)}\n\n")
    if any("[DONE]" in (c.get("text") or "") for c in recorded):
        texts.append("data: [DONE]\n\n")
    offsets = [c.get("at_ms", 0) for c in recorded]
    last = offsets[-1] if offsets else 0
    return [
        {"at_ms": offsets[i] if i < len(offsets) else last, "text": text}
        for i, text in enumerate(texts)
    ]


def _completion_chunks(completion: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The ``chat.completion.chunk`` events the API streams for a chat completion."""
    base = {k: completion[k] for k in ("id", "created", "model") if k in completion}
    base["object"] = "chat.completion.chunk"
    for choice in completion.get("choices") or []:
        index = choice.get("index", 0)
        message = choice.get("message") or {}

        def chunk(delta: dict[str, Any], finish: Any = None, index: int = index) -> dict[str, Any]:
            return {**base, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

        yield chunk({"role": message.get("role", "assistant"), "content": ""})
        if message.get("content"):
            yield chunk({"content": message["content"]})
        for i, call in enumerate(message.get("tool_calls") or []):
            yield chunk({"tool_calls": [{"index": i, **call}]})
        yield chunk({}, choice.get("finish_reason") or "stop")
    if completion.get("usage"):
        yield {**base, "choices": [], "usage": completion["usage"]}
