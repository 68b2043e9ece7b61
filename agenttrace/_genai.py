"""What an LLM call was, read from its recorded event, as OpenTelemetry GenAI attributes.

Pure functions of a completed ``http`` event: no I/O, no SDK state, so the recorder (span name
and attributes when an event completes), ``agenttrace show``/``diff``, run totals and the web
viewer all read a call the same way, live or from an old trace file.

Understood: OpenAI Chat Completions, OpenAI Responses, Anthropic Messages (streamed or not) and
OpenAI-style embeddings, whatever the host (OpenAI-compatible gateways such as litellm's proxy,
Groq, DeepSeek, OpenRouter, Azure OpenAI): the API is told by the URL path and the body's shape,
the provider by the host where it is a known one, else by the API. Anything else is not an LLM
call (``None``), never an error.

Attribute names come from ``opentelemetry-semantic-conventions`` where it defines them; the
package lags the GenAI conventions (now in their own repository), and the gaps are named below.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv._incubating.attributes import openai_attributes as oa
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from . import _sse
from ._body import json_value

logger = logging.getLogger("agenttrace")

# Gap: the package (0.66b) still spells this `gen_ai.usage.cache_creation.input_tokens`; the
# GenAI conventions renamed it.
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# The values of the enums (the package marks its Enum classes deprecated, which warns on use).
CHAT, EMBEDDINGS, EXECUTE_TOOL = "chat", "embeddings", "execute_tool"
OPENAI, ANTHROPIC = "openai", "anthropic"

# Where the provider is known from the host; other hosts are named by the API they speak.
_PROVIDER_HOSTS = {
    "api.openai.com": OPENAI,
    "api.anthropic.com": ANTHROPIC,
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "openrouter.ai": "openrouter",  # not in the enum; the conventions allow other values
}
_PROVIDER_HOST_SUFFIXES = {
    ".openai.azure.com": "azure.ai.openai",
    ".cognitiveservices.azure.com": "azure.ai.openai",
    ".services.ai.azure.com": "azure.ai.openai",
}

# Finish reasons in gen_ai.output.messages are one vocabulary across providers.
_FINISH = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "tool_calls": "tool_call",
    "function_call": "tool_call",
    "tool_use": "tool_call",
    "content_filter": "content_filter",
    "refusal": "content_filter",
}


@dataclass(frozen=True)
class Usage:
    """Tokens of one call, or a sum of calls; ``None`` where the provider reported nothing.

    ``input_tokens`` counts all input, cached input included (the conventions' definition:
    Anthropic's uncached ``input_tokens`` plus its cache reads and writes), and
    ``output_tokens`` includes reasoning.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{name: _plus(getattr(self, name), getattr(other, name)) for name in _USAGE})

    def reported(self) -> bool:
        return any(getattr(self, name) is not None for name in _USAGE)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _USAGE if getattr(self, name) is not None}


_USAGE = tuple(Usage.__dataclass_fields__)


def _plus(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b


@dataclass
class LLMCall:
    """An LLM call as the GenAI conventions see it."""

    api: str  # "openai.chat_completions", "openai.responses", "anthropic.messages", "openai.embeddings"
    provider: str  # gen_ai.provider.name
    operation: str  # gen_ai.operation.name
    request_model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # request attributes by name
    streamed: bool = False
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    usage: Usage = Usage()
    error_type: str | None = None
    response_attributes: dict[str, Any] = field(default_factory=dict)
    # Content, in the conventions' JSON shapes; filled only when asked for.
    system_instructions: list[dict[str, Any]] | None = None
    input_messages: list[dict[str, Any]] | None = None
    output_messages: list[dict[str, Any]] | None = None
    tool_definitions: list[dict[str, Any]] | None = None

    @property
    def model(self) -> str | None:
        """The model that answered, else the one asked for."""
        return self.response_model or self.request_model

    @property
    def span_name(self) -> str:
        return f"{self.operation} {self.request_model}" if self.request_model else self.operation


# -- public entry points --------------------------------------------------------------------------


def capture_content_from_env(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether message content goes on spans, per the OpenTelemetry GenAI switch."""
    value = environ.get(CAPTURE_CONTENT_ENV, "").strip().lower()
    return value in ("true", "1", "span_only", "span_and_event")


def parse_call(event: Mapping[str, Any], *, content: bool = False) -> LLMCall | None:
    """The LLM call an ``http`` event made, or ``None`` when it is not one this module knows
    (or its bodies are not what that API sends). Never raises."""
    try:
        return _parse(event, content)
    except Exception:  # a malformed body must never fail the caller; it gets no attributes
        logger.debug("agenttrace: no GenAI reading of event %s", event.get("seq"), exc_info=True)
        return None


def span_attributes(
    event: Mapping[str, Any], capture_content: bool = False
) -> tuple[str, dict[str, Any]] | None:
    """(span name, GenAI attributes) for an ``http`` event, or ``None`` if it is no LLM call.

    Message content (``gen_ai.input.messages``, ``gen_ai.output.messages``,
    ``gen_ai.system_instructions``, ``gen_ai.tool.definitions``, JSON strings) only with
    ``capture_content`` (see ``capture_content_from_env``); it is the event's bodies after
    redaction.
    """
    call = parse_call(event, content=capture_content)
    if call is None:
        return None
    return call.span_name, call_attributes(call)


def call_attributes(call: LLMCall) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        ga.GEN_AI_OPERATION_NAME: call.operation,
        ga.GEN_AI_PROVIDER_NAME: call.provider,
    }
    if call.request_model:
        attrs[ga.GEN_AI_REQUEST_MODEL] = call.request_model
    attrs.update(call.params)
    if call.api.startswith("openai."):
        attrs[oa.OPENAI_API_TYPE] = call.api.partition(".")[2]
    if call.response_id:
        attrs[ga.GEN_AI_RESPONSE_ID] = call.response_id
    if call.response_model:
        attrs[ga.GEN_AI_RESPONSE_MODEL] = call.response_model
    if call.finish_reasons:
        attrs[ga.GEN_AI_RESPONSE_FINISH_REASONS] = list(call.finish_reasons)
    for name, value in call.usage.as_dict().items():
        attrs[_USAGE_ATTRIBUTES[name]] = value
    attrs.update(call.response_attributes)
    if call.error_type:
        attrs[ERROR_TYPE] = call.error_type
    for name, value in (
        (ga.GEN_AI_SYSTEM_INSTRUCTIONS, call.system_instructions),
        (ga.GEN_AI_INPUT_MESSAGES, call.input_messages),
        (ga.GEN_AI_OUTPUT_MESSAGES, call.output_messages),
        (ga.GEN_AI_TOOL_DEFINITIONS, call.tool_definitions),
    ):
        if value:
            attrs[name] = json.dumps(value, ensure_ascii=False, default=str)
    return attrs


_USAGE_ATTRIBUTES = {
    "input_tokens": ga.GEN_AI_USAGE_INPUT_TOKENS,
    "output_tokens": ga.GEN_AI_USAGE_OUTPUT_TOKENS,
    "cache_read_tokens": ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "cache_write_tokens": GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    "reasoning_tokens": ga.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
}


def tool_span_attributes(event: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(span name, attributes) for a ``tool`` event (an ``agenttrace.tool`` function)."""
    name = str(event.get("name") or "tool")
    attrs: dict[str, Any] = {
        ga.GEN_AI_OPERATION_NAME: EXECUTE_TOOL,
        ga.GEN_AI_TOOL_NAME: name,
        # A function of the agent's own code, in the conventions' vocabulary.
        ga.GEN_AI_TOOL_TYPE: "function",
    }
    if event.get("call_id"):
        attrs[ga.GEN_AI_TOOL_CALL_ID] = str(event["call_id"])
    error = event.get("error")
    if isinstance(error, Mapping) and error.get("type"):
        attrs[ERROR_TYPE] = str(error["type"])
    return f"{EXECUTE_TOOL} {name}", attrs


# -- reading an event -----------------------------------------------------------------------------


def _parse(event: Mapping[str, Any], content: bool) -> LLMCall | None:
    if event.get("kind") != "http":
        return None
    request = event.get("request")
    if not isinstance(request, Mapping) or str(request.get("method", "")).upper() != "POST":
        return None
    body = json_value(request.get("body"))
    if not isinstance(body, dict):
        return None
    url = urlsplit(str(request.get("url", "")))
    api = _api(url.path, body)
    if api is None:
        return None
    spec = _APIS[api]
    call = LLMCall(api=api, provider=_provider(url.hostname or "", spec.family), operation=spec.op)
    call.request_model = _str(body.get("model")) or _azure_deployment(url.path)
    call.params = spec.params(body)
    call.streamed = bool(body.get("stream"))
    if content:
        spec.request_content(call, body)
    response = event.get("response")
    if isinstance(event.get("error"), Mapping):
        call.error_type = _str(event["error"].get("type")) or "error"
    if not isinstance(response, Mapping):
        return call
    status = response.get("status")
    if isinstance(status, int) and status >= 400:
        call.error_type = str(status)
        return call
    if "chunks" in response:
        call.streamed = True
        wanted = None if content else spec.wanted
        spec.stream(call, _sse.json_events(response, wanted), content)
        first = next((c.get("at_ms") for c in response["chunks"] if isinstance(c, Mapping)), None)
        if isinstance(first, (int, float)):
            call.response_attributes[ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = first / 1000.0
    else:
        answer = json_value(response.get("body"))
        if isinstance(answer, dict):
            spec.answer(call, answer, content)
    return call


def _api(path: str, body: dict[str, Any]) -> str | None:
    path = path.rstrip("/")
    if path.endswith("/chat/completions") and isinstance(body.get("messages"), list):
        return "openai.chat_completions"
    if path.endswith("/responses") and any(k in body for k in ("input", "prompt", "model")):
        return "openai.responses"
    if path.endswith("/messages") and isinstance(body.get("messages"), list):
        return "anthropic.messages"
    if path.endswith("/embeddings") and "input" in body:
        return "openai.embeddings"
    return None


def _provider(host: str, family: str) -> str:
    host = host.lower()
    if host in _PROVIDER_HOSTS:
        return _PROVIDER_HOSTS[host]
    for suffix, provider in _PROVIDER_HOST_SUFFIXES.items():
        if host.endswith(suffix):
            return provider
    return family


def _azure_deployment(path: str) -> str | None:
    # Azure OpenAI names the deployment in the path: /openai/deployments/<name>/chat/completions
    parts = path.split("/")
    if "deployments" in parts:
        index = parts.index("deployments") + 1
        if index < len(parts) and parts[index]:
            return unquote(parts[index])
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _copy_params(body: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """Request attributes for the body keys that are set to a number, string or list."""
    out = {}
    for key, attr in names.items():
        value = body.get(key)
        if isinstance(value, (bool, int, float, str)):
            out[attr] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[attr] = list(value)
    if isinstance(out.get(ga.GEN_AI_REQUEST_STOP_SEQUENCES), str):
        out[ga.GEN_AI_REQUEST_STOP_SEQUENCES] = [out[ga.GEN_AI_REQUEST_STOP_SEQUENCES]]
    return out


def _finish(reason: str | None) -> str:
    return _FINISH.get(reason or "", reason or "stop")


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "content": text}


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _tool_call_part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": _arguments(arguments)}


def _generic_part(part: Mapping[str, Any]) -> dict[str, Any]:
    # Images, audio, files...: named by type, their data left in the event.
    return {"type": str(part.get("type") or "unknown")}


def _output_type(format_type: Any) -> dict[str, Any]:
    kind = {"json_object": "json", "json_schema": "json", "text": "text"}.get(format_type)
    return {ga.GEN_AI_OUTPUT_TYPE: kind} if kind else {}


# -- OpenAI Chat Completions ----------------------------------------------------------------------

# Request parameters every API names alike.
_SAMPLING = {
    "temperature": ga.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": ga.GEN_AI_REQUEST_TOP_P,
    "stream": ga.GEN_AI_REQUEST_STREAM,
}

_CHAT_PARAMS = {
    **_SAMPLING,
    "max_tokens": ga.GEN_AI_REQUEST_MAX_TOKENS,
    "max_completion_tokens": ga.GEN_AI_REQUEST_MAX_TOKENS,
    "stop": ga.GEN_AI_REQUEST_STOP_SEQUENCES,
    "seed": ga.GEN_AI_REQUEST_SEED,
    "frequency_penalty": ga.GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": ga.GEN_AI_REQUEST_PRESENCE_PENALTY,
    "service_tier": oa.OPENAI_REQUEST_SERVICE_TIER,
}


def _chat_params(body: Mapping[str, Any]) -> dict[str, Any]:
    params = _copy_params(body, _CHAT_PARAMS)
    n = _int(body.get("n"))
    if n is not None and n != 1:
        params[ga.GEN_AI_REQUEST_CHOICE_COUNT] = n
    params.update(_output_type(_dig(body, "response_format", "type")))
    return params


def _openai_usage(usage: Any, prefix: str, output: str) -> Usage:
    """OpenAI usage: ``prompt_``/``completion_`` tokens (chat) or ``input_``/``output_``
    (Responses), each with its details."""
    if not isinstance(usage, Mapping):
        return Usage()
    inputs, outputs = f"{prefix}tokens", f"{output}tokens"
    return Usage(
        input_tokens=_int(usage.get(inputs)),
        output_tokens=_int(usage.get(outputs)),
        cache_read_tokens=_int(_dig(usage, f"{inputs}_details", "cached_tokens")),
        cache_write_tokens=_int(_dig(usage, f"{inputs}_details", "cache_write_tokens")),
        reasoning_tokens=_int(_dig(usage, f"{outputs}_details", "reasoning_tokens")),
    )


def _chat_usage(usage: Any) -> Usage:
    return _openai_usage(usage, "prompt_", "completion_")


def _openai_response_attributes(answer: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    if _str(answer.get("system_fingerprint")):
        out[oa.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = answer["system_fingerprint"]
    if _str(answer.get("service_tier")):
        out[oa.OPENAI_RESPONSE_SERVICE_TIER] = answer["service_tier"]
    return out


def _chat_message_parts(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    body = message.get("content")
    if isinstance(body, str) and body:
        parts.append(_text_part(body))
    elif isinstance(body, list):
        for part in body:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(_text_part(part["text"]))
            elif isinstance(part, Mapping):
                parts.append(_generic_part(part))
    for tool_call in message.get("tool_calls") or ():
        function = tool_call.get("function") or {}
        parts.append(
            _tool_call_part(tool_call.get("id"), function.get("name"), function.get("arguments"))
        )
    return parts


def _chat_request_content(call: LLMCall, body: Mapping[str, Any]) -> None:
    messages = []
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        role = str(message.get("role") or "user")
        if role == "tool":
            response = {"type": "tool_call_response", "id": message.get("tool_call_id")}
            messages.append(
                {"role": role, "parts": [{**response, "response": message.get("content")}]}
            )
        else:
            messages.append({"role": role, "parts": _chat_message_parts(message)})
    call.input_messages = messages
    call.tool_definitions = _function_tools(body.get("tools"))


def _function_tools(tools: Any) -> list[dict[str, Any]] | None:
    out = []
    for tool in tools or ():
        if not isinstance(tool, Mapping):
            continue
        function = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
        definition = {"type": str(tool.get("type") or "function"), "name": function.get("name")}
        if function.get("description"):
            definition["description"] = function["description"]
        schema = function.get("parameters", function.get("input_schema"))
        if schema is not None:
            definition["parameters"] = schema
        out.append(definition)
    return out or None


def _chat_answer(call: LLMCall, answer: Mapping[str, Any], content: bool) -> None:
    call.response_id = _str(answer.get("id"))
    call.response_model = _str(answer.get("model"))
    choices = [c for c in answer.get("choices") or () if isinstance(c, Mapping)]
    call.finish_reasons = [c["finish_reason"] for c in choices if _str(c.get("finish_reason"))]
    call.usage = _chat_usage(answer.get("usage"))
    call.response_attributes = _openai_response_attributes(answer)
    if content:
        call.output_messages = [
            {
                "role": "assistant",
                "parts": _chat_message_parts(c.get("message") or {}),
                "finish_reason": _finish(c.get("finish_reason")),
            }
            for c in choices
        ]


def _chat_stream(call: LLMCall, events: list[tuple[str, Any]], content: bool) -> None:
    """Rebuild the completion from its chunks; usage comes in a last chunk of its own when
    the request asked for it (``stream_options.include_usage``)."""
    answer: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    for _, chunk in events:
        if not isinstance(chunk, Mapping):
            continue
        for key in ("id", "model", "system_fingerprint", "service_tier"):
            if key not in answer and _str(chunk.get(key)):
                answer[key] = chunk[key]
        if isinstance(chunk.get("usage"), Mapping):
            answer["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or ():
            _merge_chat_delta(choices.setdefault(_int(choice.get("index")) or 0, {}), choice)
    answer["choices"] = [choices[i] for i in sorted(choices)]
    _chat_answer(call, answer, content)


def _merge_chat_delta(into: dict[str, Any], choice: Mapping[str, Any]) -> None:
    """Fold one streamed choice delta into the choice it builds, as the SDKs do."""
    message = into.setdefault("message", {"content": "", "tool_calls": []})
    delta = choice.get("delta") or {}
    if isinstance(delta.get("content"), str):
        message["content"] += delta["content"]
    for piece in delta.get("tool_calls") or ():
        index = _int(piece.get("index")) or 0
        while len(message["tool_calls"]) <= index:
            message["tool_calls"].append({"id": None, "function": {"name": None, "arguments": ""}})
        target = message["tool_calls"][index]
        target["id"] = piece.get("id") or target["id"]
        function = piece.get("function") or {}
        target["function"]["name"] = function.get("name") or target["function"]["name"]
        target["function"]["arguments"] += function.get("arguments") or ""
    if _str(choice.get("finish_reason")):
        into["finish_reason"] = choice["finish_reason"]


# -- OpenAI Responses -----------------------------------------------------------------------------

_RESPONSES_PARAMS = {
    **_SAMPLING,
    "max_output_tokens": ga.GEN_AI_REQUEST_MAX_TOKENS,
    "service_tier": oa.OPENAI_REQUEST_SERVICE_TIER,
}


def _responses_params(body: Mapping[str, Any]) -> dict[str, Any]:
    params = _copy_params(body, _RESPONSES_PARAMS)
    params.update(_output_type(_dig(body, "text", "format", "type")))
    return params


def _responses_usage(usage: Any) -> Usage:
    return _openai_usage(usage, "input_", "output_")


def _responses_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [_text_part(content)] if content else []
    parts = []
    for part in content or ():
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            parts.append(_text_part(part["text"]))
        elif isinstance(part, Mapping):
            parts.append(_generic_part(part))
    return parts


def _responses_request_content(call: LLMCall, body: Mapping[str, Any]) -> None:
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    messages = []
    for item in items or ():
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type") or "message"
        if kind == "message":
            role = str(item.get("role") or "user")
            messages.append({"role": role, "parts": _responses_parts(item.get("content"))})
        elif kind == "function_call":
            part = _tool_call_part(item.get("call_id"), item.get("name"), item.get("arguments"))
            messages.append({"role": "assistant", "parts": [part]})
        elif kind == "function_call_output":
            response = {"type": "tool_call_response", "id": item.get("call_id")}
            messages.append(
                {"role": "tool", "parts": [{**response, "response": item.get("output")}]}
            )
        else:
            messages.append({"role": "assistant", "parts": [_generic_part(item)]})
    call.input_messages = messages
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        call.system_instructions = [_text_part(body["instructions"])]
    call.tool_definitions = _function_tools(body.get("tools"))


def _responses_answer(call: LLMCall, answer: Mapping[str, Any], content: bool) -> None:
    call.response_id = _str(answer.get("id"))
    call.response_model = _str(answer.get("model"))
    call.usage = _responses_usage(answer.get("usage"))
    call.response_attributes = _openai_response_attributes(answer)
    output = [item for item in answer.get("output") or () if isinstance(item, Mapping)]
    status = answer.get("status")
    # The Responses API has no finish reason; it is derived from the status and the output.
    if status == "incomplete":
        reason = _finish(_dig(answer, "incomplete_details", "reason") or "length")
    elif status == "failed":
        reason = "error"
        call.error_type = _str(_dig(answer, "error", "code")) or "failed"
    elif any(item.get("type") == "function_call" for item in output):
        reason = "tool_call"
    else:
        reason = "stop"
    if status in ("completed", "incomplete", "failed"):
        call.finish_reasons = [reason]
    if content:
        parts = []
        for item in output:
            kind = item.get("type")
            if kind == "message":
                parts += _responses_parts(item.get("content"))
            elif kind == "function_call":
                parts.append(
                    _tool_call_part(item.get("call_id"), item.get("name"), item.get("arguments"))
                )
            elif kind == "reasoning":
                summary = " ".join(_str(s.get("text")) or "" for s in item.get("summary") or ())
                parts.append({"type": "reasoning", "content": summary})
            else:
                parts.append(_generic_part(item))
        call.output_messages = [{"role": "assistant", "parts": parts, "finish_reason": reason}]


def _responses_stream(call: LLMCall, events: list[tuple[str, Any]], content: bool) -> None:
    started: Mapping[str, Any] | None = None
    final: Mapping[str, Any] | None = None
    text = []
    for _, event in events:
        if not isinstance(event, Mapping):
            continue
        kind = event.get("type")
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            final = event.get("response")
        elif kind == "response.created":
            started = event.get("response")
        elif kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            text.append(event["delta"])
        elif kind == "error":
            call.error_type = _str(event.get("code")) or "error"
    if isinstance(final, Mapping):
        _responses_answer(call, final, content)
        return
    # Cut short: what the stream said before it ended.
    if isinstance(started, Mapping):
        call.response_id = _str(started.get("id"))
        call.response_model = _str(started.get("model"))
    if content and text:
        call.output_messages = [{"role": "assistant", "parts": [_text_part("".join(text))]}]


# -- Anthropic Messages ---------------------------------------------------------------------------

_ANTHROPIC_PARAMS = {
    **_SAMPLING,
    "max_tokens": ga.GEN_AI_REQUEST_MAX_TOKENS,
    "top_k": ga.GEN_AI_REQUEST_TOP_K,
    "stop_sequences": ga.GEN_AI_REQUEST_STOP_SEQUENCES,
}


def _anthropic_params(body: Mapping[str, Any]) -> dict[str, Any]:
    return _copy_params(body, _ANTHROPIC_PARAMS)


def _anthropic_usage(usage: Any) -> Usage:
    if not isinstance(usage, Mapping):
        return Usage()
    uncached = _int(usage.get("input_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    total = None if uncached is None else uncached + (read or 0) + (written or 0)
    return Usage(
        input_tokens=total,
        output_tokens=_int(usage.get("output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=written,
    )


def _anthropic_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [_text_part(content)] if content else []
    parts = []
    for block in content or ():
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(_text_part(str(block.get("text", ""))))
        elif kind in ("tool_use", "server_tool_use"):
            parts.append(_tool_call_part(block.get("id"), block.get("name"), block.get("input")))
        elif kind == "tool_result":
            result = block.get("content")
            if isinstance(result, list):
                result = "".join(str(b.get("text", "")) for b in result if isinstance(b, Mapping))
            response = {"type": "tool_call_response", "id": block.get("tool_use_id")}
            parts.append({**response, "response": result})
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": str(block.get("thinking", ""))})
        else:
            parts.append(_generic_part(block))
    return parts


def _anthropic_request_content(call: LLMCall, body: Mapping[str, Any]) -> None:
    call.input_messages = [
        {"role": str(m.get("role") or "user"), "parts": _anthropic_parts(m.get("content"))}
        for m in body.get("messages") or ()
        if isinstance(m, Mapping)
    ]
    system = _anthropic_parts(body.get("system"))
    call.system_instructions = system or None
    call.tool_definitions = _function_tools(body.get("tools"))


def _anthropic_answer(call: LLMCall, answer: Mapping[str, Any], content: bool) -> None:
    call.response_id = _str(answer.get("id"))
    call.response_model = _str(answer.get("model"))
    stop = _str(answer.get("stop_reason"))
    call.finish_reasons = [stop] if stop else []
    call.usage = _anthropic_usage(answer.get("usage"))
    if answer.get("type") == "error":
        call.error_type = _str(_dig(answer, "error", "type")) or "error"
    if content:
        call.output_messages = [
            {
                "role": "assistant",
                "parts": _anthropic_parts(answer.get("content")),
                "finish_reason": _finish(stop),
            }
        ]


def _anthropic_stream(call: LLMCall, events: list[tuple[str, Any]], content: bool) -> None:
    message: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    for _, event in events:
        if not isinstance(event, Mapping):
            continue
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), Mapping):
            message.update(event["message"])
            usage.update(message.get("usage") or {})
        elif kind == "message_delta":
            message.update({k: v for k, v in (event.get("delta") or {}).items() if v is not None})
            # The final usage: output tokens, and (newer API versions) the input counts again.
            usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        elif kind == "content_block_start" and content:
            blocks[_int(event.get("index")) or 0] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta" and content:
            _merge_anthropic_delta(blocks.setdefault(_int(event.get("index")) or 0, {}), event)
        elif kind == "error":
            call.error_type = _str(_dig(event, "error", "type")) or "error"
    for block in blocks.values():
        if "partial_json" in block:
            block["input"] = _arguments(block.pop("partial_json"))
    message.update(usage=usage, content=[blocks[i] for i in sorted(blocks)])
    error = call.error_type
    _anthropic_answer(call, message, content)
    call.error_type = call.error_type or error


def _merge_anthropic_delta(block: dict[str, Any], event: Mapping[str, Any]) -> None:
    delta = event.get("delta") or {}
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + str(delta.get("text", ""))
    elif kind == "input_json_delta":
        block["partial_json"] = block.get("partial_json", "") + str(delta.get("partial_json", ""))
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + str(delta.get("thinking", ""))


# -- embeddings -----------------------------------------------------------------------------------


def _embeddings_params(body: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if _str(body.get("encoding_format")):
        params[ga.GEN_AI_REQUEST_ENCODING_FORMATS] = [body["encoding_format"]]
    if _int(body.get("dimensions")) is not None:
        params[ga.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = body["dimensions"]
    return params


def _embeddings_answer(call: LLMCall, answer: Mapping[str, Any], content: bool) -> None:
    call.response_model = _str(answer.get("model"))
    usage = answer.get("usage")
    if isinstance(usage, Mapping):
        call.usage = Usage(input_tokens=_int(usage.get("prompt_tokens")))


def _no_content(call: LLMCall, body: Mapping[str, Any]) -> None:
    return None


def _no_stream(call: LLMCall, events: list[tuple[str, Any]], content: bool) -> None:
    return None


# Without content, a stream's deltas do not matter: only the events that carry ids, finish
# reasons and usage are parsed.
_CHAT_FACTS = re.compile(r'"(?:usage|finish_reason)"\s*:\s*[{"]')


def _chat_facts(index: int, event: _sse.Event) -> bool:
    return index == 0 or _CHAT_FACTS.search(event.data) is not None


def _named(*names: str) -> Callable[[int, _sse.Event], bool]:
    # A gateway that drops the event names ("message" is the default) gets all events parsed.
    wanted = {*names, "message"}
    return lambda index, event: event.event in wanted


@dataclass(frozen=True)
class _Api:
    family: str  # the provider an unknown host speaking this API is taken for
    op: str
    params: Callable[[Mapping[str, Any]], dict[str, Any]]
    request_content: Callable[[LLMCall, Mapping[str, Any]], None]
    answer: Callable[[LLMCall, Mapping[str, Any], bool], None]
    stream: Callable[[LLMCall, list[tuple[str, Any]], bool], None]
    wanted: Callable[[int, _sse.Event], bool] | None = None  # stream events read without content


_APIS = {
    "openai.chat_completions": _Api(
        OPENAI, CHAT, _chat_params, _chat_request_content, _chat_answer, _chat_stream, _chat_facts
    ),
    "openai.responses": _Api(
        OPENAI,
        CHAT,
        _responses_params,
        _responses_request_content,
        _responses_answer,
        _responses_stream,
        _named(
            "response.created",
            "response.completed",
            "response.incomplete",
            "response.failed",
            "error",
        ),
    ),
    "anthropic.messages": _Api(
        ANTHROPIC,
        CHAT,
        _anthropic_params,
        _anthropic_request_content,
        _anthropic_answer,
        _anthropic_stream,
        _named("message_start", "message_delta", "error"),
    ),
    "openai.embeddings": _Api(
        OPENAI, EMBEDDINGS, _embeddings_params, _no_content, _embeddings_answer, _no_stream
    ),
}


def llm_calls(events: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], LLMCall]]:
    """The events that are LLM calls, each with its reading."""
    out = []
    for event in events:
        call = parse_call(event)
        if call is not None:
            out.append((event, call))
    return out
