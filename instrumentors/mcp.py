"""MCP client sessions (the ``mcp`` package): stdio, SSE and streamable HTTP, one ``mcp`` event
per session with its JSON-RPC messages in order.

Every MCP transport is an async context manager that yields the (read, write) pair of message
streams ``ClientSession`` talks over; that pair is where we intercept, whatever the transport.
The transport functions are replaced inside the ``asynccontextmanager`` wrapper the module holds
(its closure), so a ``from mcp.client.stdio import stdio_client`` made before AgentTrace started
is covered too.

Record: the real transport runs as the client's own work — the server process it spawns, and
the HTTP its transport makes (the long-lived SSE GET of streamable HTTP included) are part of the
session, never captured again as HTTP events — and both streams are teed. Replay: no transport
at all (no subprocess, no network): each request the client sends is matched on method and params
with a recorded one, and answered with the recorded response (under the client's own id) and the
notifications the server sent before it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

from agenttrace._patches import Patches
from agenttrace.capture import MessageSession, SessionCall, begin_session, internal_errors
from agenttrace.capture.messages import RECV, SEND, encode_message
from agenttrace.capture.mode import clients_own_work
from agenttrace.capture.values import canonical

logger = logging.getLogger("agenttrace")

CLIENT = "mcp"
# module -> (transport function, kind of transport)
TRANSPORTS = {
    "mcp.client.stdio": (("stdio_client", "stdio"),),
    "mcp.client.sse": (("sse_client", "sse"),),
    "mcp.client.streamable_http": (
        ("streamable_http_client", "streamable-http"),
        ("streamablehttp_client", "streamable-http"),  # mcp 1.x
    ),
}


def patch(module: ModuleType, patches: Patches) -> None:
    import importlib

    for module_name, functions in TRANSPORTS.items():
        try:
            transports = importlib.import_module(module_name)
        except ImportError:
            continue
        for name, kind in functions:
            helper = vars(transports).get(name)
            if helper is not None and patches.first(("mcp-transport", id(helper))):
                _replace_transport(helper, kind, patches)


def _replace_transport(helper: Any, kind: str, patches: Patches) -> None:
    """Swap the async generator inside ``helper`` (an ``asynccontextmanager`` wrapper) for ours,
    so every reference to ``helper`` — however early it was imported — runs ours."""
    original = getattr(helper, "__wrapped__", None)
    cells = [c for c in helper.__closure__ or () if c.cell_contents is original]
    if original is None or len(cells) != 1:
        logger.warning("agenttrace: %s has an unexpected shape; not captured", helper.__name__)
        return
    cell = cells[0]
    ours = _intercepting(contextlib.asynccontextmanager(original), kind)
    cell.cell_contents = ours

    def undo() -> None:
        if cell.cell_contents is ours:
            cell.cell_contents = original

    patches.on_undo(undo)


def _server(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    if kind == "stdio":
        params = args[0] if args else kwargs.get("server")
        server = {"command": str(params.command), "args": [str(a) for a in params.args or ()]}
        if getattr(params, "cwd", None):
            server["cwd"] = str(params.cwd)
        return server
    return {"url": str(args[0] if args else kwargs.get("url"))}


def _call(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> SessionCall:
    server = _server(kind, args, kwargs)
    label = server.get("url") or " ".join([server["command"], *server["args"]])
    return SessionCall(
        kind="mcp",
        client=CLIENT,
        key=label,
        label=label,
        fields={"transport": kind, "server": server},
    )


def _intercepting(original: Callable[..., Any], kind: str) -> Callable[..., Any]:
    async def transport(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            call = _call(kind, args, kwargs)
        except Exception:
            logger.exception("agenttrace: could not capture an MCP %s session", kind)
            call = None
        session = begin_session(call) if call is not None else None
        if session is None:
            async with original(*args, **kwargs) as streams:
                yield streams
            return
        if session.recorded is not None:
            async with _served(session) as streams:
                yield streams
            return
        async with _live(original(*args, **kwargs), session) as streams:
            yield streams

    return transport


# -- record ----------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _live(transport: Any, session: MessageSession) -> AsyncIterator[Any]:
    """The real transport as the client's own work (nothing below is captured again), its
    streams teed."""
    try:
        with clients_own_work():
            streams = await transport.__aenter__()
    except BaseException as exc:
        session.fail(exc)
        raise
    session.update(streams=len(streams))
    teed = (_TeeRead(streams[0], session), _TeeWrite(streams[1], session), *streams[2:])
    try:
        yield teed
    except BaseException as exc:
        with clients_own_work():
            suppressed = await transport.__aexit__(type(exc), exc, exc.__traceback__)
        if not isinstance(exc, GeneratorExit):
            session.record_error(exc)
        session.close()
        if not suppressed:
            raise
    else:
        try:
            with clients_own_work():
                await transport.__aexit__(None, None, None)
        except BaseException as exc:
            session.fail(exc)
            raise
        session.close()


def _json(item: Any) -> Any:
    message = getattr(item, "message", None)
    if message is None:
        return None
    return message.model_dump(by_alias=True, mode="json", exclude_unset=True)


class _Delegating:
    def __init__(self, inner: Any, session: MessageSession) -> None:
        self._inner = inner
        self._session = session

    def __getattr__(self, name: str) -> Any:  # last_context, close, clone, statistics...
        return getattr(self._inner, name)

    async def __aenter__(self) -> Any:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)

    def _report(self, direction: str, item: Any) -> None:
        with internal_errors("record an MCP message"):
            data = _json(item)
            if data is not None:
                self._session.message(direction, data)


class _TeeRead(_Delegating):
    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        item = await self._inner.__anext__()
        self._report(RECV, item)
        return item

    async def receive(self) -> Any:
        item = await self._inner.receive()
        self._report(RECV, item)
        return item


class _TeeWrite(_Delegating):
    async def send(self, item: Any) -> None:
        self._report(SEND, item)
        # the transport handles the message in the sender's context (streamable HTTP, SSE): it
        # must see the client's own work there, so its HTTP is not captured again
        with clients_own_work():
            await self._inner.send(item)


# -- replay ----------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _served(session: Any) -> AsyncIterator[Any]:
    import anyio

    send_to_client, client_reads = anyio.create_memory_object_stream(math.inf)
    server = _RecordedServer(session, send_to_client)
    streams = (client_reads, server)
    count = int((session.recorded or {}).get("streams") or 2)
    if count > 2:  # mcp 1.x streamable HTTP also yields get_session_id
        streams = (*streams, *([lambda: None] * (count - 2)))
    try:
        async with client_reads, send_to_client:
            yield streams
    finally:
        session.close()


class _RecordedServer:
    """The write stream of a served session: answers each client message from the recording."""

    def __init__(self, session: Any, to_client: Any) -> None:
        self._session = session
        self._to_client = to_client
        messages = session.script.messages
        self._requests: dict[tuple[str, str], deque[int]] = {}
        self._answers: dict[Any, int] = {}  # recorded request id -> position of its response
        for position, message in enumerate(messages):
            body = message.get("json") or {}
            if message.get("dir") == SEND and "method" in body:
                key = (body["method"], _params_key(body.get("params")))
                self._requests.setdefault(key, deque()).append(position)
            elif message.get("dir") == RECV and "id" in body and "method" not in body:
                self._answers.setdefault(_id(body["id"]), position)
        self._messages = messages
        self._sent = 0

    async def send(self, item: Any) -> None:
        body = _json(item)
        if body is None:
            return
        self._session.message(SEND, body)
        index, self._sent = self._sent, self._sent + 1
        if "method" not in body:
            return  # the client's answer to a request of the server's: nothing to reply
        queue = self._requests.get((body["method"], _params_key(body.get("params"))))
        if not queue:
            closest = self._closest(body)
            if closest is None:
                self._session.owner.unrecorded_message(self._session, index, encode_message(body))
            else:
                self._session.owner.different_message(
                    self._session, index, _matched_part(closest), _matched_part(body)
                )
            if "id" in body:  # relaxed: the client gets an error answer instead of hanging
                await self._deliver(_not_recorded(body))
            return
        position = queue.popleft()
        if "id" not in body:
            return  # a notification: recorded, nothing to answer
        recorded_id = _id(self._messages[position]["json"]["id"])
        answer_at = self._answers.get(recorded_id)
        if answer_at is None:  # the recording ends before the server answered
            self._session.ended_early(f"waits for the answer to {body['method']}")
            await self._deliver(_not_recorded(body))
            return
        for message in self._messages[position + 1 : answer_at]:
            data = message.get("json") or {}
            if message.get("dir") == RECV and "id" not in data:  # notifications on the way
                await self._deliver(data)
        await self._deliver({**self._messages[answer_at]["json"], "id": body["id"]})

    def _closest(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """A recorded request of the same method, one not answered yet if there is one (for
        the divergence message)."""
        waiting = sorted(
            position
            for (method, _), queue in self._requests.items()
            if method == body["method"]
            for position in queue
        )
        if waiting:
            return self._messages[waiting[0]]["json"]
        for message in self._messages:
            data = message.get("json") or {}
            if message.get("dir") == SEND and data.get("method") == body["method"]:
                return data
        return None

    async def _deliver(self, data: dict[str, Any]) -> None:
        self._session.message(RECV, data)
        await self._to_client.send(_session_message(data))

    # the rest of a write stream's interface
    async def __aenter__(self) -> _RecordedServer:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._to_client.aclose()

    def close(self) -> None:
        self._to_client.close()


def _id(value: Any) -> str:
    return canonical(value)


_VOLATILE_META = ("traceparent", "tracestate", "baggage")  # trace context: new in every run


def _params_key(params: Any) -> str:
    """What a request is matched on besides its method: its params, trace context left out."""
    if isinstance(params, dict) and isinstance(params.get("_meta"), dict):
        meta = {k: v for k, v in params["_meta"].items() if k not in _VOLATILE_META}
        params = (
            {**params, "_meta": meta} if meta else {k: v for k, v in params.items() if k != "_meta"}
        )
    return canonical(params)


def _matched_part(body: dict[str, Any]) -> dict[str, Any]:
    """What a request is matched on, as a stored message (for a divergence's JSON diff)."""
    return encode_message(
        {"method": body["method"], "params": json.loads(_params_key(body.get("params")))}
    )


def _not_recorded(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": body.get("id"),
        "error": {"code": -32603, "message": "agenttrace: this request is not in the recording"},
    }


def _session_message(data: dict[str, Any]) -> Any:
    from mcp.shared.message import SessionMessage

    try:
        import mcp_types

        message = mcp_types.jsonrpc_message_adapter.validate_python(data)
    except (ImportError, AttributeError):
        import mcp.types

        message = mcp.types.JSONRPCMessage.model_validate(data)
    return SessionMessage(message)
