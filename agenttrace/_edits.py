"""Edits to strings and streams: where redaction replaces text, and how a streamed body's
edits, found on the whole text, are cut back onto its chunks (same count, same timing)."""

from __future__ import annotations

import base64
import difflib
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

MARKER = "[REDACTED]"

Edit = tuple[int, int, str]  # replace text[start:end] with the string


def merge(text: str, edits: list[Edit]) -> list[Edit]:
    """Sorted, non-overlapping edits that change something and leave markers alone."""
    if not edits:
        return edits
    guarded = _marker_spans(text) if MARKER in text else []
    merged: list[Edit] = []
    for start, end, new in sorted(edits):
        if any(a <= start and end <= b for a, b in guarded):
            continue  # already redacted (idempotence: a mask matching inside the marker)
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
            continue
        merged.append((start, end, new))
    return [e for e in merged if text[e[0] : e[1]] != e[2]]


def _marker_spans(text: str) -> list[tuple[int, int]]:
    spans, at = [], text.find(MARKER)
    while at >= 0:
        spans.append((at, at + len(MARKER)))
        at = text.find(MARKER, at + 1)
    return spans


def apply(text: str, edits: list[Edit]) -> str:
    out, pos = [], 0
    for start, end, new in edits:
        out.append(text[pos:start])
        out.append(new)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def diff_edits(old: str, new: str) -> list[Edit]:
    """The edits turning ``old`` into ``new`` (what a callable mask did), in ``old``'s offsets."""
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    a, b = old[prefix : len(old) - suffix], new[prefix : len(new) - suffix]
    if len(a) + len(b) > 40000:  # keep it linear on huge texts: one edit spanning the change
        return [(prefix, prefix + len(a), b)]
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [
        (prefix + i1, prefix + i2, b[j1:j2])
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def chunk_bytes(chunk: dict[str, Any]) -> bytes:
    if "text" in chunk:
        return chunk["text"].encode("utf-8", "surrogateescape")
    if "base64" in chunk:
        return base64.b64decode(chunk["base64"])
    return b""


def encode_chunk(data: bytes) -> dict[str, str]:
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def byte_edits(text: str, edits: list[Edit]) -> list[tuple[int, int, bytes]]:
    if text.isascii():
        return [(a, b, new.encode()) for a, b, new in edits]

    def at(i: int) -> int:
        return len(text[:i].encode("utf-8", "surrogateescape"))

    return [(at(a), at(b), new.encode("utf-8", "surrogateescape")) for a, b, new in edits]


def splice(joined: Any, sizes: list[int], edits: Sequence[tuple[int, int, Any]]) -> list[Any]:
    """Apply edits to the concatenation (str or bytes) and cut it back into the original chunks:
    kept text stays in its chunk, a replacement goes to the chunk where the replaced text began."""
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    parts: list[list[Any]] = [[] for _ in sizes]
    last = len(sizes) - 1

    def owner(offset: int) -> int:
        return min(last, max(0, bisect_right(bounds, offset) - 1))

    def keep(start: int, end: int) -> None:
        i = owner(start)
        while start < end and i <= last:
            stop = min(end, bounds[i + 1])
            parts[i].append(joined[start:stop])
            start, i = stop, i + 1

    pos = 0
    for start, end, new in edits:
        keep(pos, start)
        parts[owner(start)].append(new)
        pos = end
    keep(pos, len(joined))
    empty = joined[:0]
    return [empty.join(p) for p in parts]
