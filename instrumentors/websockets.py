"""websockets: the asyncio and sync clients (``websockets.asyncio.client.connect``,
``websockets.sync.client.connect``), one ``websocket`` event per connection.

Both clients run websockets' Sans-I/O ``ClientProtocol``; the messages are read there, where the
asyncio and sync clients meet: the handshake request (``send_request``), the handshake response
and every received frame (``events_received``), every sent frame (``send_text``,
``send_binary``, ``send_continuation``), and the end (``receive_eof``, with the close code).
Fragments are assembled into the messages the agent sent and received.

Where the connection is opened (asyncio: ``connect.open_tcp_connection``, or
``create_connection`` before websockets 17; sync: ``reconnect.open_connection`` /
``open_socket``, websockets 17+) a session begins. Record: the real connection is opened inside
it. Replay: no socket at all — the client's own code talks to an in-memory server (websockets'
Sans-I/O ``ServerProtocol``) that completes the handshake and answers each message the client
sends with the recorded server messages that followed it; what the client sends is checked
against the recording. The client is the real one throughout, so its API, exceptions and close
codes are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from agenttrace._patches import Patches
from agenttrace.capture import (
    MessageSession,
    SessionCall,
    begin_session,
    intercepting,
    internal_errors,
    rebuild_error,
)
from agenttrace.capture.messages import RECV, SEND, Script, decode_message
from agenttrace.capture.mode import clients_own_work

logger = logging.getLogger("agenttrace")

CLIENT = "websockets"
_SESSION = "_agenttrace_session"
# The session being opened here: the ClientProtocol created next belongs to it.
_OPENING: contextvars.ContextVar[MessageSession | None] = contextvars.ContextVar(
    "agenttrace_websocket_opening", default=None
)


def patch(module: ModuleType, patches: Patches) -> None:
    import websockets.asyncio.client as asyncio_client
    import websockets.client as sans_io
    import websockets.sync.client as sync_client

    _patch_protocol(sans_io.ClientProtocol, patches)
    connect = asyncio_client.connect
    for name in ("open_tcp_connection", "create_connection"):  # websockets 17 / 13-16
        if callable(vars(connect).get(name)):
            patches.replace(connect, name, _asyncio_open(getattr(connect, name)))
            break
    import websockets.asyncio.connection as asyncio_connection
    import websockets.sync.connection as sync_connection

    connection = asyncio_connection.Connection
    patches.replace(connection, "recv", _asyncio_recv(connection.recv))
    connection = sync_connection.Connection
    patches.replace(connection, "recv", _sync_recv(connection.recv))
    reconnect = getattr(sync_client, "reconnect", None)
    if reconnect is not None and hasattr(reconnect, "open_socket"):  # websockets 17+
        patches.replace(reconnect, "open_connection", _sync_open(reconnect.open_connection))
        patches.replace(reconnect, "open_socket", _sync_socket(reconnect.open_socket))
        patches.replace(reconnect, "enable_tls", _sync_tls(reconnect.enable_tls))
    else:
        # Before 17, connect() is one function that opens its socket inline; the names it looks
        # up in its module when called are where to step in (however early it was imported).
        patches.replace(sync_client, "parse_uri", _remember_uri(sync_client.parse_uri))
        patches.replace(sync_client, "socket", _SocketModule(sync_client.socket))


def _call(uri: str, headers: Any) -> SessionCall:
    pairs = _header_pairs(headers)
    return SessionCall(
        kind="websocket",
        client=CLIENT,
        key=uri,
        label=uri,
        fields={"request": {"url": uri, "headers": pairs}},
    )


def _header_pairs(headers: Any) -> list[list[str]]:
    if headers is None:
        return []
    if hasattr(headers, "raw_items"):  # websockets' Headers (repeated names kept)
        pairs = headers.raw_items()
    elif hasattr(headers, "items"):
        pairs = headers.items()
    else:
        pairs = headers
    return [[str(k), str(v)] for k, v in pairs]


# -- the Sans-I/O protocol: what was sent and received ---------------------------------------------


def _live(protocol: Any) -> MessageSession | None:
    session = vars(protocol).get(_SESSION)
    return session if session is not None and session.recorded is None else None


class _Assembler:
    """Fragments into messages, one direction of one connection."""

    def __init__(self) -> None:
        self.text = False
        self.parts: list[bytes] = []

    def add(self, data: bytes, fin: bool, text: bool | None) -> Any:
        if text is not None:  # the first frame of a message says what it is
            self.text, self.parts = text, []
        self.parts.append(bytes(data))
        if not fin:
            return None
        whole = b"".join(self.parts)
        self.parts = []
        return whole.decode("utf-8", "replace") if self.text else whole


def _patch_protocol(protocol_class: type, patches: Patches) -> None:
    from websockets.frames import Opcode
    from websockets.http11 import Response

    original_init = protocol_class.__init__

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        with clients_own_work():  # its id is a uuid4
            original_init(self, *args, **kwargs)
        session = _OPENING.get() or _take_opened_socket_session()
        if session is not None:
            self.__dict__[_SESSION] = session
            self.__dict__["_agenttrace_out"] = _Assembler()
            self.__dict__["_agenttrace_in"] = _Assembler()

    def sending(name: str, text: bool | None) -> Any:
        original = getattr(protocol_class, name)

        @functools.wraps(original)
        def send(self: Any, data: Any, fin: bool = True) -> Any:
            with clients_own_work():  # the frame's mask
                result = original(self, data, fin)
            session = _live(self)
            if session is not None:
                with internal_errors("record a websocket message"):
                    message = self._agenttrace_out.add(data, fin, text)
                    if message is not None:
                        session.message(SEND, message)
            return result

        return send

    original_request = protocol_class.send_request

    @functools.wraps(original_request)
    def send_request(self: Any, request: Any) -> None:
        session = vars(self).get(_SESSION)
        if session is not None:
            with internal_errors("record a websocket handshake"):
                url = session.fields["request"]["url"]
                session.update(request={"url": url, "headers": _header_pairs(request.headers)})
        original_request(self, request)

    original_events = protocol_class.events_received

    @functools.wraps(original_events)
    def events_received(self: Any) -> list[Any]:
        events = original_events(self)
        session = _live(self)
        if session is not None and events:
            with internal_errors("record websocket frames"):
                for event in events:
                    if isinstance(event, Response):
                        session.opened(
                            {
                                "status": event.status_code,
                                "reason": event.reason_phrase,
                                "headers": _header_pairs(event.headers),
                            }
                        )
                    elif event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                        text = None if event.opcode is Opcode.CONT else event.opcode is Opcode.TEXT
                        message = self._agenttrace_in.add(event.data, event.fin, text)
                        if message is not None:
                            session.message(RECV, message)
        return events

    original_eof = protocol_class.receive_eof

    @functools.wraps(original_eof)
    def receive_eof(self: Any) -> None:
        with clients_own_work():
            original_eof(self)
        session = vars(self).get(_SESSION)
        if session is not None:
            with internal_errors("record a websocket close"):
                _closed(self, session)

    for name in ("connect", "receive_data", "send_close", "send_ping", "send_pong", "fail"):
        # the handshake key, the masks of control frames (a close is answered while parsing)
        patches.replace(protocol_class, name, _own_work(getattr(protocol_class, name)))
    patches.replace(protocol_class, "__init__", __init__)
    patches.replace(protocol_class, "send_request", send_request)
    patches.replace(protocol_class, "events_received", events_received)
    patches.replace(protocol_class, "receive_eof", receive_eof)
    patches.replace(protocol_class, "send_text", sending("send_text", True))
    patches.replace(protocol_class, "send_binary", sending("send_binary", False))
    patches.replace(protocol_class, "send_continuation", sending("send_continuation", None))


def _own_work(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        with clients_own_work():
            return original(*args, **kwargs)

    return call


def _closed(protocol: Any, session: MessageSession) -> None:
    close = protocol.close_rcvd or protocol.close_sent
    if close is not None:
        by = "server" if protocol.close_rcvd_then_sent else "client"
        session.closed(close.code, close.reason, by=by)
    session.close()


# -- receiving on a served connection: past the end of the recording -----------------------------


def _served_session(connection: Any) -> Any:
    session = vars(getattr(connection, "protocol", None) or object()).get(_SESSION)
    return session if session is not None and session.recorded is not None else None


def _before_recv(session: Any) -> None:
    if session.past_the_end():
        try:
            session.ended_early("waits for another message")  # governance: ReplayDivergence
        finally:
            session.server.end_of_recording()


def _asyncio_recv(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def recv(self: Any, *args: Any, **kwargs: Any) -> Any:
        session = _served_session(self)
        if session is None:
            return await original(self, *args, **kwargs)
        _before_recv(session)
        message = await original(self, *args, **kwargs)
        session.consumed += 1
        return message

    return recv


def _sync_recv(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def recv(self: Any, *args: Any, **kwargs: Any) -> Any:
        session = _served_session(self)
        if session is None:
            return original(self, *args, **kwargs)
        _before_recv(session)
        message = original(self, *args, **kwargs)
        session.consumed += 1
        return message

    return recv


# -- opening a connection --------------------------------------------------------------------------


def _asyncio_open(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def open_connection(self: Any) -> Any:
        if not intercepting():
            return await original(self)
        session = begin_session(_call(self.uri, getattr(self, "additional_headers", None)))
        if session is None:
            return await original(self)
        token = _OPENING.set(session)
        try:
            if session.recorded is None:
                with session.sending():
                    return await original(self)
            return _served_asyncio(self, session)
        finally:
            _OPENING.reset(token)

    return open_connection


def _served_asyncio(connect: Any, session: MessageSession) -> Any:
    _raise_recorded_error(session)
    from websockets.uri import parse_uri

    if hasattr(connect, "factory"):  # websockets 17
        connection = connect.factory(connect.ws_uri)
    else:
        connection = connect.protocol_factory(parse_uri(connect.uri))
    transport = _ReplayTransport(connection, session, asyncio.get_running_loop())
    connection.connection_made(transport)
    return connection


def _sync_open(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def open_connection(self: Any, deadline: Any) -> Any:
        if not intercepting():
            return original(self, deadline)
        session = begin_session(_call(self.uri, getattr(self, "additional_headers", None)))
        if session is None:
            return original(self, deadline)
        token = _OPENING.set(session)
        try:
            if session.recorded is not None:
                _raise_recorded_error(session)
                return original(self, deadline)  # over the replay socket (open_socket below)
            try:
                return original(self, deadline)
            except BaseException as exc:
                session.fail(exc)
                raise
        finally:
            _OPENING.reset(token)

    return open_connection


def _sync_socket(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def open_socket(self: Any, deadline: Any) -> Any:
        session = _OPENING.get()
        if session is None:
            return original(self, deadline)
        if session.recorded is not None:
            return _ReplaySocket(session)
        with session.sending():
            return original(self, deadline)

    return open_socket


def _sync_tls(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def enable_tls(self: Any, sock: Any, deadline: Any) -> Any:
        if isinstance(sock, _ReplaySocket):
            return sock  # the recording holds what came out of TLS
        return original(self, sock, deadline)

    return enable_tls


# websockets < 17, sync: connect() parses its URI, then opens its socket, then its protocol
_connecting = threading.local()


def _remember_uri(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def parse_uri(uri: str) -> Any:
        _connecting.uri = uri
        return original(uri)

    return parse_uri


def _take_opened_socket_session() -> MessageSession | None:
    session = getattr(_connecting, "session", None)
    _connecting.session = None
    return session


class _SocketModule:
    """The ``socket`` module as websockets' sync client (< 17) sees it: ``create_connection``
    opens the session (live, or a replay socket)."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        uri = getattr(_connecting, "uri", None)
        session = begin_session(_call(uri, None)) if uri and intercepting() else None
        if session is None:
            return self._real.create_connection(*args, **kwargs)
        _connecting.uri = None
        if session.recorded is not None:
            _raise_recorded_error(session)
            sock: Any = _ReplaySocket(session)
        else:
            with session.sending():
                sock = self._real.create_connection(*args, **kwargs)
        _connecting.session = session
        return sock


def _raise_recorded_error(session: MessageSession) -> None:
    recorded = session.recorded or {}
    if recorded.get("error") is not None and recorded.get("response") is None:
        exc = rebuild_error(recorded["error"], OSError)
        session.fail(exc)
        raise exc


# -- replay: an in-memory server that plays the recording ------------------------------------------


class _ScriptedServer:
    """websockets' own Sans-I/O server, scripted by the recorded session."""

    def __init__(self, session: Any, deliver: Callable[[bytes], None]) -> None:
        from websockets.server import ServerProtocol

        recorded = session.recorded
        response = recorded.get("response") or {}
        self.subprotocol = _header(response.get("headers") or [], "sec-websocket-protocol")
        self.status = int(response.get("status") or 101)
        self.reason = str(response.get("reason") or "")
        self.server = ServerProtocol(
            subprotocols=[self.subprotocol] if self.subprotocol else None, max_size=None
        )
        self.session = session
        session.server = self
        self.script: Script = session.script
        self.deliver = deliver
        self.close = recorded.get("close") or None
        self.incoming = _Assembler()
        self.lock = threading.Lock()

    def received(self, data: bytes) -> None:
        """Bytes the client wrote."""
        from websockets.frames import Opcode
        from websockets.http11 import Request

        with self.lock:
            self.server.receive_data(data)
            events = self.server.events_received()
            for event in events:
                if isinstance(event, Request):
                    self._handshake(event)
                elif event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    text = None if event.opcode is Opcode.CONT else event.opcode is Opcode.TEXT
                    message = self.incoming.add(event.data, event.fin, text)
                    if message is not None:
                        self.session.sent(message)
                        self._answer()
            self._flush()

    def ended(self) -> None:
        """The client closed its end."""
        with self.lock:
            self.server.receive_eof()
            self._flush()

    def _handshake(self, request: Any) -> None:
        if self.status != 101:
            response = self.server.reject(self.status, self.reason)
        else:
            response = self.server.accept(request)
        self.server.send_response(response)
        if self.status == 101:
            self._answer()

    def _answer(self) -> None:
        for message in self.script.ready():
            payload = decode_message(message)
            if isinstance(payload, str):
                self.server.send_text(payload.encode("utf-8"))
            else:
                self.server.send_binary(payload)
        close = self.close or {}
        if self.script.exhausted() and self.script.sends_done and close.get("by") == "server":
            self.server.send_close(close["code"], close.get("reason", ""))

    def end_of_recording(self) -> None:
        """The client waits for more than the recording holds: close the connection, so its
        receive raises the client's own ConnectionClosedError."""
        with self.lock:
            self.server.fail(1011, "end of the recording")
            self._flush()

    def _flush(self) -> None:
        for data in self.server.data_to_send():
            self.deliver(data)


def _header(headers: list[list[str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


class _ReplayTransport(asyncio.Transport):
    """The asyncio transport of a served connection: writes go to the scripted server, its
    answers come back through the event loop."""

    def __init__(self, connection: Any, session: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._connection = connection
        self._loop = loop
        self._closing = False
        self._server = _ScriptedServer(session, self._deliver)

    def _deliver(self, data: bytes) -> None:
        if data:
            self._loop.call_soon(self._connection.data_received, data)
        else:  # the server closed its end
            self._loop.call_soon(self._lost)

    def _lost(self) -> None:
        if not self._closing:
            self._closing = True
            self._connection.connection_lost(None)

    def write(self, data: Any) -> None:
        self._server.received(bytes(data))

    def write_eof(self) -> None:
        self._server.ended()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self._loop.call_soon(self._lost)

    def abort(self) -> None:
        self._lost()

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class _ReplaySocket:
    """The socket of a served sync connection: what the client sends goes to the scripted
    server; what the server answers waits here. The client polls its socket with a selector, so
    readability is signalled through a pipe (a pipe, not a socket: nothing leaves the process)."""

    family = None  # not AF_INET: the client sets no TCP options on it

    def __init__(self, session: Any) -> None:
        self._pending = bytearray()
        self._eof = False
        self._lock = threading.Condition()
        self._signal_r, self._signal_w = os.pipe()
        os.set_blocking(self._signal_r, False)
        self._signalled = False
        self._server = _ScriptedServer(session, self._deliver)

    def fileno(self) -> int:
        return self._signal_r

    def _deliver(self, data: bytes) -> None:
        with self._lock:
            if data:
                self._pending += data
            else:
                self._eof = True
            if not self._signalled:
                self._signalled = True
                os.write(self._signal_w, b"!")
            self._lock.notify_all()

    def recv(self, bufsize: int) -> bytes:
        with self._lock:
            # blocking, as a socket (websockets < 17 reads without polling first)
            self._lock.wait_for(lambda: self._pending or self._eof)
            data = bytes(self._pending[:bufsize])
            del self._pending[:bufsize]
            if not self._pending and not self._eof and self._signalled:
                self._signalled = False
                with contextlib.suppress(BlockingIOError):
                    os.read(self._signal_r, 64)
            return data

    def sendall(self, data: Any) -> None:
        self._server.received(bytes(data))

    def shutdown(self, how: int) -> None:
        self._server.ended()

    def close(self) -> None:
        self._deliver(b"")

    def __del__(self) -> None:
        for fd in (self._signal_r, self._signal_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def settimeout(self, timeout: float | None) -> None:
        pass

    def setsockopt(self, *args: Any) -> None:
        pass

    def getsockname(self) -> Any:
        return ("127.0.0.1", 0)

    getpeername = getsockname
