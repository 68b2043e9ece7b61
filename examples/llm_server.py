"""A tiny, dependency-free local server that plays an LLM provider and a few tools.

It speaks enough of the OpenAI Chat Completions and Responses APIs and the Anthropic Messages
API for the real `openai` and `anthropic` SDKs (streaming included, with token usage the way
each provider reports it, cache and reasoning tokens too), plus plain tool endpoints that exercise
the awkward corners of HTTP capture: gzip, binary bodies, error statuses, slow answers, SSE
and chunked transfer-encoding. Answers are deterministic so recordings can be compared.

    from llm_server import start_server
    server = start_server()            # daemon thread, random free port
    server.url                         # "http://127.0.0.1:PORT"
    server.request_count, server.requests
    server.stop()

    python examples/llm_server.py --port 8765
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_CITY = "Paris"
CONDITIONS = ("sunny", "partly cloudy", "overcast", "light rain", "windy", "foggy")
# A fixed timestamp keeps whole response bodies identical from run to run.
CREATED = 1_700_000_000


class RecordedRequest(tuple):
    """`(method, path, body)` as a plain tuple; headers and client address ride along."""

    headers: dict[str, str]
    client: tuple[str, int]

    def __new__(
        cls, method: str, path: str, body: bytes, headers: dict[str, str], client: tuple[str, int]
    ):
        self = super().__new__(cls, (method, path, body))
        self.headers = headers
        self.client = client
        return self

    @property
    def method(self) -> str:
        return self[0]

    @property
    def path(self) -> str:
        return self[1]

    @property
    def body(self) -> bytes:
        return self[2]


class LLMServer(ThreadingHTTPServer):
    """The HTTP server; counts every request it receives."""

    daemon_threads = True
    # Keep-alive handler threads wait for the next request; never join them on close.
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], chunk_delay: float = 0.0, quiet: bool = True):
        super().__init__(address, Handler)
        self.chunk_delay = chunk_delay
        self.quiet = quiet
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        host = self.server_address[0]
        return f"http://{host}:{self.port}"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients dropping keep-alive connections (or stop() shutting them) is routine.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def track(self, conn: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def start(self) -> LLMServer:
        # A short poll interval makes stop() (and so every test teardown) quick.
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"llm_server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections.

        Pooled keep-alive connections would otherwise keep being served by their handler
        threads, and a test that stops the server expects nothing to answer any more.
        """
        self.shutdown()
        self.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)


def start_server(
    host: str = "127.0.0.1", port: int = 0, chunk_delay: float = 0.0, quiet: bool = True
) -> LLMServer:
    """Start an `LLMServer` in a daemon thread and return it once it accepts connections."""
    return LLMServer((host, port), chunk_delay=chunk_delay, quiet=quiet).start()


# --------------------------------------------------------------------------- helpers


def _digest(value: Any, size: int = 24) -> str:
    raw = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:size]


def _tokens(text: str) -> list[str]:
    """Split like a tokenizer would stream: words with their leading whitespace."""
    return re.findall(r"\s*\S+", text) or [text]


def _pieces(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _text_of(content: Any) -> str:
    """Text of an OpenAI/Anthropic message content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                if part.get("type") == "tool_result":
                    parts.append(_text_of(part.get("content")))
                elif isinstance(part.get("text"), str):
                    parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return ""


def cities_in(text: str) -> list[str]:
    """The cities a user asks about: "weather in Paris and New York?" -> [Paris, New York]."""
    name = r"[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*"
    match = re.search(rf"\b(?:in|for|at)\s+({name}(?:\s*(?:,|\band\b)\s*{name})*)", text)
    if not match:
        return [DEFAULT_CITY]
    return [c for c in re.split(r"\s*(?:,|\band\b)\s*", match.group(1)) if c]


def weather_for(city: str) -> dict[str, Any]:
    h = int(hashlib.sha256(city.lower().encode()).hexdigest(), 16)
    return {
        "city": city,
        "temperature_c": 4 + h % 26,
        "conditions": CONDITIONS[h % len(CONDITIONS)],
        "humidity": 30 + h % 61,
        "wind_kph": h % 40,
    }


def describe_tool_results(results: list[str]) -> str:
    """The final answer after tool calls: a sentence per result, raw text if not weather."""
    sentences = []
    for raw in results:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and {"city", "temperature_c", "conditions"} <= data.keys():
            sentences.append(
                f"In {data['city']} it is {data['temperature_c']} C and {data['conditions']}."
            )
        else:
            sentences.append(f"The tool said: {raw}")
    return "Here is what I found. " + " ".join(sentences)


def _tool_name(tools: list[dict[str, Any]], openai_style: bool) -> str:
    names = [(t.get("function", {}) if openai_style else t).get("name") for t in tools]
    names = [n for n in names if n and not n.startswith("final_result")] or names
    return "get_weather" if "get_weather" in names else (names[0] or "get_weather")


def _output_tool(tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """A tool that carries the final structured answer (pydantic-ai names it final_result)."""
    for tool in tools:
        function = tool.get("function", {})
        if str(function.get("name", "")).startswith("final_result"):
            return function["name"], function.get("parameters") or {}
    return None


def _response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or {}
    return None


def fill_schema(schema: dict[str, Any], results: list[str]) -> Any:
    """An answer that fits a JSON schema, taking values from the weather the tools returned."""
    found: dict[str, Any] = {}
    for raw in results:
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        if isinstance(data, dict):
            found = {**data, **found}
    defs = schema.get("$defs") or {}

    def fill(node: dict[str, Any], name: str = "") -> Any:
        if "$ref" in node:
            return fill(defs.get(node["$ref"].rsplit("/", 1)[-1], {}), name)
        if "anyOf" in node:
            return fill(node["anyOf"][0], name)
        kind = node.get("type")
        if kind == "object" or "properties" in node:
            return {key: fill(value, key) for key, value in (node.get("properties") or {}).items()}
        if name in found and not isinstance(found[name], (dict, list)):
            return found[name]
        if "enum" in node:
            return node["enum"][0]
        return {
            "string": describe_tool_results(results) if name == "summary" else name or "value",
            "integer": 0,
            "number": 0.0,
            "boolean": False,
            "array": [],
        }.get(kind)

    return fill(schema)


# --------------------------------------------------------------------------- OpenAI


def openai_reply(body: dict[str, Any]) -> dict[str, Any]:
    """Decide the assistant turn: `{"text": str}` or `{"tool_calls": [(id, name, args)]}`."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        trailing = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            trailing.append(_text_of(message.get("content")))
        results = list(reversed(trailing))
        output = _output_tool(body.get("tools") or [])
        if output is not None:  # structured output as a tool call (pydantic-ai's final_result)
            name, schema = output
            args = json.dumps(fill_schema(schema, results))
            return {"tool_calls": [(f"call_{_digest([messages, name])}", name, args)]}
        schema = _response_schema(body)
        if schema is not None:  # structured output as JSON text (response_format json_schema)
            return {"text": json.dumps(fill_schema(schema, results))}
        return {"text": describe_tool_results(results)}
    text = _text_of(last.get("content"))
    if body.get("tools") and last.get("role") == "user":
        name = _tool_name(body["tools"], openai_style=True)
        calls = [
            (f"call_{_digest([messages, i])}", name, json.dumps({"city": city}))
            for i, city in enumerate(cities_in(text))
        ]
        return {"tool_calls": calls}
    return {"text": f"Hello! You said: {text}" if text else "Hello!"}


# Token counts are words, so tests can predict them. Caching and reasoning are simulated
# without state, so equal requests always get equal answers:
# - OpenAI: the system prompt (chat) or the instructions (Responses) count as cached input,
#   as if the provider had seen that prefix before;
# - Anthropic: blocks marked with `cache_control` are read from the cache in `system` and
#   written to it in `messages`;
# - asking for reasoning (`reasoning_effort` / `reasoning`) adds REASONING_TOKENS output tokens.
REASONING_TOKENS = 16


def _words(content: Any) -> int:
    return len(_text_of(content).split())


def _reasoning(body: dict[str, Any]) -> int:
    return REASONING_TOKENS if body.get("reasoning_effort") or body.get("reasoning") else 0


def _usage(body: dict[str, Any], completion: int) -> dict[str, Any]:
    messages = body.get("messages") or []
    prompt = sum(_words(m.get("content")) for m in messages)
    cached = sum(_words(m.get("content")) for m in messages if m.get("role") == "system")
    reasoning = _reasoning(body)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion + reasoning,
        "total_tokens": prompt + completion + reasoning,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
    }


def openai_completion(body: dict[str, Any]) -> dict[str, Any]:
    reply = openai_reply(body)
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if "tool_calls" in reply:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in reply["tool_calls"]
        ]
        finish, completion = "tool_calls", 10 * len(reply["tool_calls"])
    else:
        message["content"] = reply["text"]
        finish, completion = "stop", len(_tokens(reply["text"]))
    return {
        "id": f"chatcmpl-{_digest(body)}",
        "object": "chat.completion",
        "created": CREATED,
        "model": body.get("model", "local-model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": _usage(body, completion),
        "system_fingerprint": "fp_local",
    }


def openai_chunks(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    reply = openai_reply(body)
    base = {
        "id": f"chatcmpl-{_digest(body)}",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": body.get("model", "local-model"),
        "system_fingerprint": "fp_local",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {**base, "choices": [choice]}

    if "tool_calls" in reply:
        yield chunk({"role": "assistant", "content": None})
        for index, (cid, name, args) in enumerate(reply["tool_calls"]):
            head = {"index": index, "id": cid, "type": "function"}
            yield chunk({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
            for piece in _pieces(args):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        finish, completion = "tool_calls", 10 * len(reply["tool_calls"])
    else:
        yield chunk({"role": "assistant", "content": ""})
        tokens = _tokens(reply["text"])
        for token in tokens:
            yield chunk({"content": token})
        finish, completion = "stop", len(tokens)
    yield chunk({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        yield {**base, "choices": [], "usage": _usage(body, completion)}


# --------------------------------------------------------------------------- OpenAI Responses


def _response_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The Responses API `input` as a list of items (a bare string is one user message)."""
    items = body.get("input")
    if isinstance(items, str):
        return [{"type": "message", "role": "user", "content": items}]
    return [i for i in items or [] if isinstance(i, dict)]


def responses_reply(body: dict[str, Any]) -> dict[str, Any]:
    """Decide the turn, as `openai_reply` does: `{"text": str}` or `{"tool_calls": [...]}`."""
    items = _response_items(body)
    outputs = []
    for item in reversed(items):
        if item.get("type") != "function_call_output":
            break
        outputs.append(_text_of(item.get("output")))
    if outputs:
        return {"text": describe_tool_results(list(reversed(outputs)))}
    last = items[-1] if items else {}
    text = _text_of(last.get("content"))
    if body.get("tools") and last.get("role") == "user":
        names = [t.get("name") for t in body["tools"]]
        name = "get_weather" if "get_weather" in names else (names[0] or "get_weather")
        calls = [
            (f"call_{_digest([items, i])}", name, json.dumps({"city": city}))
            for i, city in enumerate(cities_in(text))
        ]
        return {"tool_calls": calls}
    return {"text": f"Hello! You said: {text}" if text else "Hello!"}


def _responses_usage(body: dict[str, Any], output: int) -> dict[str, Any]:
    items = _response_items(body)
    words = sum(_words(i.get("content") or i.get("output")) for i in items)
    cached = _words(body.get("instructions"))
    reasoning = _reasoning(body)
    return {
        "input_tokens": words + cached,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output + reasoning,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": words + cached + output + reasoning,
    }


def responses_output(body: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The output items of a Responses API answer and its output token count."""
    reply = responses_reply(body)
    if "tool_calls" in reply:
        items = [
            {"id": f"fc_{cid[5:]}", "type": "function_call", "status": "completed"}
            | {"call_id": cid, "name": name, "arguments": args}
            for cid, name, args in reply["tool_calls"]
        ]
        return items, 10 * len(items)
    text = {"type": "output_text", "text": reply["text"], "annotations": [], "logprobs": []}
    message = {"id": f"msg_{_digest(body)}", "type": "message", "role": "assistant"}
    return [{**message, "status": "completed", "content": [text]}], len(_tokens(reply["text"]))


def openai_response(body: dict[str, Any]) -> dict[str, Any]:
    output, tokens = responses_output(body)
    return {
        "id": f"resp_{_digest(body)}",
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "model": body.get("model", "local-model"),
        "instructions": body.get("instructions"),
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "previous_response_id": body.get("previous_response_id"),
        "text": {"format": {"type": "text"}},
        "error": None,
        "incomplete_details": None,
        "metadata": {},
        "usage": _responses_usage(body, tokens),
    }


def responses_events(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The Responses API stream, numbered: lifecycle events around each item's deltas."""
    for number, event in enumerate(_responses_events(body)):
        yield event["type"], {**event, "sequence_number": number}


def _responses_events(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    final = openai_response(body)
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    yield {"type": "response.created", "response": started}
    yield {"type": "response.in_progress", "response": started}
    for index, item in enumerate(final["output"]):
        at = {"output_index": index, "item_id": item["id"]}
        if item["type"] == "message":
            part = item["content"][0]
            yield {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress", "content": []},
            }
            empty = {**part, "text": ""}
            yield {"type": "response.content_part.added", **at, "content_index": 0, "part": empty}
            for token in _tokens(part["text"]):
                delta = {"delta": token, "logprobs": []}
                yield {"type": "response.output_text.delta", **at, "content_index": 0, **delta}
            done = {"text": part["text"], "logprobs": []}
            yield {"type": "response.output_text.done", **at, "content_index": 0, **done}
            yield {"type": "response.content_part.done", **at, "content_index": 0, "part": part}
        else:
            yield {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress", "arguments": ""},
            }
            for piece in _pieces(item["arguments"]):
                yield {"type": "response.function_call_arguments.delta", **at, "delta": piece}
            done = {"arguments": item["arguments"], "name": item["name"]}
            yield {"type": "response.function_call_arguments.done", **at, **done}
        yield {"type": "response.output_item.done", "output_index": index, "item": item}
    yield {"type": "response.completed", "response": final}


# --------------------------------------------------------------------------- Anthropic


def anthropic_content(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The assistant content blocks and stop reason for a Messages API request."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    content = last.get("content")
    blocks = content if isinstance(content, list) else []
    results = [_text_of(b.get("content")) for b in blocks if b.get("type") == "tool_result"]
    if results:
        return [{"type": "text", "text": describe_tool_results(results)}], "end_turn"
    text = _text_of(content)
    if body.get("tools") and last.get("role") == "user":
        name = _tool_name(body["tools"], openai_style=False)
        uses = [
            {"type": "tool_use", "id": f"toolu_{_digest([messages, i])}", "name": name}
            | {"input": {"city": city}}
            for i, city in enumerate(cities_in(text))
        ]
        return uses, "tool_use"
    return [{"type": "text", "text": f"Hello! You said: {text}" if text else "Hello!"}], "end_turn"


def _cache_marked_words(content: Any) -> int:
    blocks = content if isinstance(content, list) else []
    return sum(_words([b]) for b in blocks if isinstance(b, dict) and b.get("cache_control"))


def _anthropic_usage(body: dict[str, Any], output: int) -> dict[str, int]:
    messages = body.get("messages") or []
    words = sum(_words(m.get("content")) for m in messages) + _words(body.get("system"))
    read = _cache_marked_words(body.get("system"))
    written = sum(_cache_marked_words(m.get("content")) for m in messages)
    return {
        "input_tokens": words - read - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": output,
    }


def _output_tokens(blocks: list[dict[str, Any]]) -> int:
    return sum(len(_tokens(b["text"])) if b["type"] == "text" else 10 for b in blocks)


def anthropic_message(body: dict[str, Any]) -> dict[str, Any]:
    blocks, stop = anthropic_content(body)
    return {
        "id": f"msg_{_digest(body)}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "local-model"),
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _anthropic_usage(body, _output_tokens(blocks)),
    }


def anthropic_events(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    message = anthropic_message(body)
    blocks, output = message["content"], message["usage"]["output_tokens"]
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {**message["usage"], "output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            empty, deltas = (
                {"type": "text", "text": ""},
                [{"type": "text_delta", "text": t} for t in _tokens(block["text"])],
            )
        else:
            empty = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _pieces(json.dumps(block["input"]))
            ]
        yield (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": empty},
        )
        for delta in deltas:
            yield (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    # The final usage is cumulative, input and cache counts included, as the API sends it.
    usage = {**message["usage"], "output_tokens": output}
    yield "message_delta", {"type": "message_delta", "delta": stop, "usage": usage}
    yield "message_stop", {"type": "message_stop"}


# --------------------------------------------------------------------------- handler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LLMServer
    # Headers and body go out in separate writes; with Nagle on, a keep-alive client waits
    # ~40 ms for a delayed ACK before the body arrives.
    disable_nagle_algorithm = True
    # An idle keep-alive connection is closed after this many seconds.
    timeout = 120

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    # All methods go through one router so every request is counted the same way.
    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = RecordedRequest(self.command, self.path, body, headers, self.client_address[:2])
        self.server.record(request)
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self.body = body
        route = ROUTES.get((self.command, url.path)) or ROUTES.get(("*", url.path))
        if route is None and url.path.startswith("/status/"):
            route = Handler.status
        try:
            if route is None:
                self.send_json(404, {"error": {"message": f"no route for {url.path}"}})
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            # The client went away (e.g. its timeout fired); nothing left to answer.
            self.close_connection = True

    # ---- low-level writers

    def send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(data)

    def send_json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), "application/json", extra)

    def send_chunked(self, content_type: str, parts: Iterable[bytes], delay: float = 0.0) -> None:
        """Stream `parts` as HTTP/1.1 chunks, flushed one by one, keeping the connection."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first = True
        for part in parts:
            if not first and delay:
                time.sleep(delay)
            first = False
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def json_body(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self.send_json(400, {"error": {"message": "request body must be a JSON object"}})
            return None
        return data

    # ---- LLM providers

    def chat_completions(self) -> None:
        body = self.json_body()
        if body is None:
            return
        forced = re.fullmatch(r"error-(\d{3})", str(body.get("model", "")))
        if forced:
            # A model name like "error-429" makes the provider fail, for error-path tests.
            error = {"message": "forced error", "type": "server_error", "code": forced.group(1)}
            self.send_json(int(forced.group(1)), {"error": error})
            return
        if not body.get("stream"):
            self.send_json(200, openai_completion(body))
            return
        events = [b"data: %s\n\n" % json.dumps(c).encode() for c in openai_chunks(body)]
        self.send_chunked(
            "text/event-stream", [*events, b"data: [DONE]\n\n"], self.server.chunk_delay
        )

    def _json_or_events(
        self,
        body: dict[str, Any],
        answer: Callable[[dict[str, Any]], dict[str, Any]],
        events: Callable[[dict[str, Any]], Iterable[tuple[str, dict[str, Any]]]],
    ) -> None:
        """The whole answer as JSON, or (``stream``) as named server-sent events."""
        if not body.get("stream"):
            self.send_json(200, answer(body))
            return
        parts = [
            b"event: %s\ndata: %s\n\n" % (name.encode(), json.dumps(data).encode())
            for name, data in events(body)
        ]
        self.send_chunked("text/event-stream", parts, self.server.chunk_delay)

    # Not `responses`: BaseHTTPRequestHandler.responses is its table of status phrases.
    def openai_responses(self) -> None:
        body = self.json_body()
        if body is not None:
            self._json_or_events(body, openai_response, responses_events)

    def messages(self) -> None:
        body = self.json_body()
        if body is not None:
            self._json_or_events(body, anthropic_message, anthropic_events)

    def traces_ingest(self) -> None:
        """Where openai-agents exports its own traces (pointed here instead of OpenAI)."""
        body = self.json_body()
        if body is None:
            return
        self.send_json(200, {"ok": True, "items": len(body.get("data") or [])})

    def models(self) -> None:
        model = {"id": "local-model", "object": "model", "created": CREATED, "owned_by": "local"}
        self.send_json(200, {"object": "list", "data": [model]})

    # ---- tools

    def weather(self) -> None:
        city = self.query.get("city", "").strip()
        if not city:
            self.send_json(400, {"error": "missing query parameter: city"})
            return
        self.send_json(200, weather_for(city))

    def echo(self) -> None:
        try:
            parsed: Any = json.loads(self.body) if self.body else None
        except ValueError:
            parsed = None
        payload = {
            "method": self.command,
            "path": urlsplit(self.path).path,
            "query": self.query,
            "json": parsed,
            "body": self.body.decode("utf-8", "replace"),
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        self.send_json(200, payload)

    def token(self) -> None:
        """An OAuth-style answer full of what scrubbing removes (``?gzip=1``: gzip-encoded)."""
        data = json.dumps(
            {
                "access_token": "tok_" + "9" * 40,
                "token_type": "bearer",
                "user": "ada@example.com",
                "order": "ACME-123456",
                "expires_in": 3600,
            }
        ).encode()
        if self.query.get("gzip"):
            self.send_bytes(
                200, gzip.compress(data, mtime=0), "application/json", {"Content-Encoding": "gzip"}
            )
        else:
            self.send_bytes(200, data, "application/json")

    def gzipped(self) -> None:
        data = json.dumps({"compressed": True, "items": list(range(50))}).encode()
        self.send_bytes(
            200, gzip.compress(data, mtime=0), "application/json", {"Content-Encoding": "gzip"}
        )

    def binary(self) -> None:
        self.send_bytes(200, bytes(range(256)), "application/octet-stream")

    def status(self) -> None:
        try:
            code = int(urlsplit(self.path).path.rsplit("/", 1)[1])
            phrase = HTTPStatus(code).phrase
        except ValueError:
            self.send_json(400, {"error": "status must be a known HTTP status code"})
            return
        extra = {"Retry-After": self.query["retry_after"]} if "retry_after" in self.query else None
        self.send_json(code, {"status": code, "message": phrase}, extra)

    def slow(self) -> None:
        seconds = float(self.query.get("seconds", "1"))
        time.sleep(seconds)
        self.send_json(200, {"slept": seconds})

    def sse(self) -> None:
        n = int(self.query.get("n", "5"))
        delay = float(self.query.get("delay", "0"))
        events = [
            b"id: %d\nevent: tick\ndata: %s\n\n" % (i, json.dumps({"i": i}).encode())
            for i in range(n)
        ]
        self.send_chunked("text/event-stream", events, delay)

    def chunked(self) -> None:
        parts = [f"part {i}: {'x' * (10 + i)}\n".encode() for i in range(5)]
        self.send_chunked("text/plain; charset=utf-8", parts, float(self.query.get("delay", "0")))

    def redirect(self) -> None:
        target = self.query.get("to", "/weather?city=Paris")
        self.send_json(302, {"location": target}, {"Location": target})

    def health(self) -> None:
        self.send_json(200, {"ok": True})


ROUTES = {
    ("POST", "/v1/chat/completions"): Handler.chat_completions,
    ("POST", "/chat/completions"): Handler.chat_completions,
    ("POST", "/v1/responses"): Handler.openai_responses,
    ("POST", "/responses"): Handler.openai_responses,
    ("POST", "/v1/messages"): Handler.messages,
    ("GET", "/v1/models"): Handler.models,
    ("POST", "/v1/traces/ingest"): Handler.traces_ingest,
    ("GET", "/weather"): Handler.weather,
    ("*", "/echo"): Handler.echo,
    ("GET", "/gzip"): Handler.gzipped,
    ("GET", "/token"): Handler.token,
    ("GET", "/binary"): Handler.binary,
    ("GET", "/slow"): Handler.slow,
    ("GET", "/sse"): Handler.sse,
    ("GET", "/chunked"): Handler.chunked,
    ("GET", "/redirect"): Handler.redirect,
    ("GET", "/health"): Handler.health,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local OpenAI/Anthropic-compatible test server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between SSE chunks")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    server = LLMServer((args.host, args.port), chunk_delay=args.chunk_delay, quiet=not args.verbose)
    # SIGTERM (how the demo stops us) should exit as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"llm_server listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
