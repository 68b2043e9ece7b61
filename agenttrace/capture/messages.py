"""Message sessions: a websocket connection or an MCP client session, as its client reports it.

Like an HTTP exchange, but long-lived and two-way: an instrumentor turns its client's connection
into a :class:`SessionCall`, gets a :class:`MessageSession` from
:func:`agenttrace.capture.begin_session`, and reports the handshake (``opened``), every message
in either direction (``message``), the close and any error. When ``session.recorded`` is set (a
Player serves the session) there is no connection: the instrumentor serves the client from
:class:`Script` and reports what the client sends with ``sent``, which checks it against the
recording. The event lists the messages in order, each with its time and direction.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from .. import _trace
from .base import Capture

logger = logging.getLogger("agenttrace")

SEND, RECV = "send", "recv"


@dataclass
class SessionCall:
    """A client's session in neutral form.

    ``fields`` go into the event as they are (a websocket's ``request``: URL and handshake
    headers; an MCP session's ``transport`` and ``server``); ``key`` is what a replay matches the
    session on (the URL, the server's command or URL); ``label`` names it in messages.
    """

    kind: str  # "websocket" | "mcp"
    client: str
    key: str
    label: str
    fields: dict[str, Any] = field(default_factory=dict)


def session_key(kind: str, fields: dict[str, Any]) -> str:
    """What a replay matches a session on, from its (redacted) event fields: a websocket's URL,
    an MCP server's URL or command line."""
    if kind == "websocket":
        return str((fields.get("request") or {}).get("url", ""))
    server = fields.get("server") or {}
    if server.get("url"):
        return str(server["url"])
    return " ".join([str(server.get("command", "")), *map(str, server.get("args") or ())])


def span_start(call: SessionCall, seq: int) -> tuple[str, dict[str, Any]]:
    """The CLIENT span of a session: its name and attributes."""
    attributes: dict[str, Any] = {_trace.ATTR_SEQ: seq, "agenttrace.client": call.client}
    if call.kind == "websocket":
        attributes["url.full"] = call.key
    else:
        attributes["mcp.transport"] = str(call.fields.get("transport", ""))
    return f"{call.kind} {call.label}", attributes


def encode_message(payload: Any) -> dict[str, Any]:
    """A message as stored: ``{"text": ...}``, ``{"base64": ...}`` or ``{"json": ...}``."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(payload)).decode("ascii")}
    if isinstance(payload, str):
        return {"text": payload}
    return {"json": payload}


def decode_message(stored: dict[str, Any]) -> Any:
    if "base64" in stored:
        return base64.b64decode(stored["base64"])
    if "text" in stored:
        return stored["text"]
    return stored.get("json")


def comparable(stored: dict[str, Any]) -> Any:
    """A message's content for comparing a sent message with the recorded one: JSON text is
    compared as JSON (key order and spacing do not matter)."""
    if "text" in stored:
        try:
            return json.loads(stored["text"])
        except ValueError:
            return stored["text"]
    return stored.get("json", stored.get("base64"))


class MessageSession(Capture):
    """A live session: handshake, messages and close as the client reports them."""

    recorded: dict[str, Any] | None = None  # the recorded event, when a Player serves it

    def __init__(self, owner: Any, call: SessionCall, **where: Any) -> None:
        super().__init__(owner, **where)
        self.kind = call.kind
        self.call = call
        self.fields = dict(call.fields)
        self._messages: list[dict[str, Any]] = []
        self._response: dict[str, Any] | None = None
        self._close: dict[str, Any] | None = None
        self._lock = threading.Lock()  # sync websockets receive in their own thread

    def opened(self, response: dict[str, Any]) -> None:
        """The handshake's answer (a websocket's status and headers)."""
        self._response = response

    def update(self, **fields: Any) -> None:
        """Fields learned once the session is open (the handshake request's final headers)."""
        self.fields.update(fields)

    def message(self, direction: str, payload: Any) -> None:
        """One message, ``send`` or ``recv``: str (text), bytes (binary) or a JSON value."""
        if self._done:
            return
        try:
            stored = {"at_ms": round(self.elapsed_ms(), 3), "dir": direction}
            stored.update(encode_message(payload))
            with self._lock:
                self._messages.append(stored)
        except Exception:
            logger.exception("agenttrace: could not record a %s message", self.kind)

    def closed(self, code: int | None, reason: str = "", by: str | None = None) -> None:
        """The closing handshake: its code and reason, and who started it."""
        if self._close is None and code is not None:
            self._close = {"code": code, "reason": reason}
            if by is not None:
                self._close["by"] = by

    def _finish(self) -> None:
        event = self.event_head()
        event["client"] = self.call.client
        event.update(self.fields)
        if self._response is not None:
            event["response"] = self._response
        with self._lock:
            event["messages" if self.kind == "mcp" else "frames"] = list(self._messages)
        if self._close is not None:
            event["close"] = self._close
        if self._error is not None:
            event["error"] = self._error
        event["duration_ms"] = self.duration_ms()
        event["redacted"] = []
        self.owner.finish(self, event)


class ServedSession(MessageSession):
    """A session served from the recording: no connection; what the client sends is checked
    against the recorded messages, and the owner (the Player) decides what a difference means."""

    def __init__(self, owner: Any, call: SessionCall, recorded: dict[str, Any], **where: Any):
        super().__init__(owner, call, **where)
        self.recorded = recorded
        self.script = Script(recorded)
        self.server: Any = None  # what plays the other end (the instrumentor's)
        self.consumed = 0  # received messages the client has taken

    def sent(self, payload: Any) -> None:
        """The client sent ``payload``: compare it with the recorded send at that position."""
        self.message(SEND, payload)
        index, expected = self.script.sent()
        actual = encode_message(payload)
        if expected is None:
            self.owner.unrecorded_message(self, index, actual)
        elif comparable(expected) != comparable(actual):
            self.owner.different_message(self, index, expected, actual)

    def past_the_end(self) -> bool:
        """The client has taken every recorded message and the recorded server did not close
        the session: a further receive asks for more than the recording holds."""
        close = self.script.close or {}
        return self.consumed >= self.script.received_total and close.get("by") != "server"

    def ended_early(self, what: str) -> None:
        """The client wants more than the recording holds (a receive past its end)."""
        self.owner.recording_ended(self, what)

    def _finish(self) -> None:
        # The replayed run's event is the recorded session, under the replayed run's numbering.
        event = {k: v for k, v in self.recorded.items() if k not in ("seq", "span_id", "step")}
        event.update(self.event_head())
        self.owner.finish(self, event)


class Script:
    """The recorded messages of one session, served in order.

    A received message is released once the client has sent as many messages as it had when the
    message arrived at record time: the server's answers follow the client's requests, however
    fast the replay runs.
    """

    def __init__(self, recorded: dict[str, Any]) -> None:
        self.messages: list[dict[str, Any]] = list(
            recorded.get("frames") or recorded.get("messages") or []
        )
        self.close: dict[str, Any] | None = recorded.get("close")
        self.error: dict[str, Any] | None = recorded.get("error")
        self._send_at = [i for i, m in enumerate(self.messages) if m.get("dir") == SEND]
        self._recvs: list[tuple[int, dict[str, Any]]] = []
        before = 0
        for message in self.messages:
            if message.get("dir") == SEND:
                before += 1
            else:
                self._recvs.append((before, message))
        self.sent_count = 0
        self.received_count = 0

    def sent(self) -> tuple[int, dict[str, Any] | None]:
        """Count one sent message; its index among all messages and the recorded one there."""
        index = self.sent_count
        self.sent_count += 1
        if index >= len(self._send_at):
            return len(self.messages) + index - len(self._send_at), None
        position = self._send_at[index]
        return position, self.messages[position]

    def ready(self) -> list[dict[str, Any]]:
        """The received messages due now (their sends have been made), taken."""
        out = []
        while self.received_count < len(self._recvs):
            needs, message = self._recvs[self.received_count]
            if needs > self.sent_count:
                break
            out.append(message)
            self.received_count += 1
        return out

    @property
    def received_total(self) -> int:
        return len(self._recvs)

    @property
    def sends_done(self) -> bool:
        return self.sent_count >= len(self._send_at)

    def exhausted(self) -> bool:
        """Every recorded received message has been served."""
        return self.received_count >= len(self._recvs)
