"""Server-sent events in a recorded response: its chunks joined back and split into events.

Chunks are stored as they were read, cut anywhere (mid-line, mid-UTF-8 character), so the
stream is reassembled from bytes before it is parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ._body import decode_body

_LINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    event: str  # "message" when the stream named none, as the SSE specification says
    data: str
    id: str | None = None


def stream_bytes(response: Mapping[str, Any]) -> bytes:
    """The streamed body of a response, its chunks joined."""
    return b"".join(decode_body(chunk) for chunk in response.get("chunks") or ())


def stream_text(response: Mapping[str, Any]) -> str:
    return stream_bytes(response).decode("utf-8", "replace")


def events(text: str) -> Iterator[Event]:
    """The events of an SSE stream (per the WHATWG parsing rules; retry fields ignored)."""
    name, data, last_id = "", [], None
    for line in _LINE.split(text):
        if not line:
            if data:
                yield Event(name or "message", "\n".join(data), last_id)
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        elif field == "id" and "\0" not in value:
            last_id = value
    if data:  # a stream cut short still delivers what it had
        yield Event(name or "message", "\n".join(data), last_id)


def json_events(
    response: Mapping[str, Any], wanted: Callable[[int, Event], bool] | None = None
) -> list[tuple[str, Any]]:
    """(event name, parsed data) for each event of a streamed response whose data is JSON;
    the OpenAI ``[DONE]`` sentinel and other non-JSON data are skipped, and so are the events
    ``wanted(index, event)`` turns down (parsing every delta of a long run adds up)."""
    out = []
    for index, event in enumerate(events(stream_text(response))):
        if wanted is not None and not wanted(index, event):
            continue
        try:
            out.append((event.event, json.loads(event.data)))
        except ValueError:
            continue
    return out
