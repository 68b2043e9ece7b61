"""GenAI semantic-convention attributes, tokens and cost, read from recorded LLM calls.

The recorded run is a real agent (openai and anthropic SDKs, streamed and not, Responses API)
against the local server; every value is checked against what the SDKs themselves parsed.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _recorded import Recording, llm_events, record
from conftest import run_python
from llm_server import start_server
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga

from agenttrace import _cost, _genai

CONTENT = (
    ga.GEN_AI_INPUT_MESSAGES,
    ga.GEN_AI_OUTPUT_MESSAGES,
    ga.GEN_AI_SYSTEM_INSTRUCTIONS,
    ga.GEN_AI_TOOL_DEFINITIONS,
)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    server = start_server()
    try:
        yield record(tmp_path_factory.mktemp("genai"), server.url)
    finally:
        server.stop()


def _calls(recording: Recording) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    events = llm_events(recording.document)
    assert len(events) == len(recording.seen) == 7
    return list(zip(events, recording.seen, strict=True))


def test_every_llm_call_gets_the_attributes_its_sdk_saw(recording: Recording) -> None:
    for event, seen in _calls(recording):
        name, attrs = _genai.span_attributes(event)
        model = seen["model"]
        assert name == f"chat {model}"
        assert attrs[ga.GEN_AI_OPERATION_NAME] == "chat"
        provider = "anthropic" if seen["api"] == "anthropic" else "openai"
        assert attrs[ga.GEN_AI_PROVIDER_NAME] == provider
        assert attrs[ga.GEN_AI_REQUEST_MODEL] == model
        assert attrs[ga.GEN_AI_RESPONSE_MODEL] == model
        assert attrs[ga.GEN_AI_RESPONSE_ID] == seen["id"]
        assert attrs[ga.GEN_AI_RESPONSE_FINISH_REASONS] == seen["finish"]
        assert attrs[ga.GEN_AI_USAGE_INPUT_TOKENS] == seen["input"]
        assert attrs[ga.GEN_AI_USAGE_OUTPUT_TOKENS] == seen["output"]
        assert attrs[ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == seen["cached"]
        if "cache_write" in seen:
            assert attrs["gen_ai.usage.cache_write.input_tokens"] == seen["cache_write"]
        if "reasoning" in seen and seen["api"] != "anthropic":
            assert attrs[ga.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == seen["reasoning"]
        streamed = "chunks" in event["response"]
        assert (ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK in attrs) is streamed
        if streamed:
            assert attrs[ga.GEN_AI_REQUEST_STREAM] is True
            assert 0 < attrs[ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] * 1000 <= event["duration_ms"]
        assert not set(CONTENT) & set(attrs), "content is opt-in"
    # What the streamed calls reported really came from their last events.
    streamed = [seen for event, seen in _calls(recording) if "chunks" in event["response"]]
    assert [s["reasoning"] for s in streamed if s["api"] != "anthropic"] == [16, 16]
    assert [s["cache_write"] for s in streamed if s["api"] == "anthropic"] == [4]


def test_request_parameters(recording: Recording) -> None:
    attrs = [_genai.span_attributes(event)[1] for event, _ in _calls(recording)]
    chat, _, responses, _, claude, *_ = attrs
    assert chat[ga.GEN_AI_REQUEST_TEMPERATURE] == 0.3
    assert chat[ga.GEN_AI_REQUEST_MAX_TOKENS] == 200
    assert chat[ga.GEN_AI_REQUEST_SEED] == 7
    assert chat[ga.GEN_AI_REQUEST_STOP_SEQUENCES] == ["END"]
    assert chat["openai.api.type"] == "chat_completions"
    assert chat["openai.response.system_fingerprint"] == "fp_local"
    assert responses[ga.GEN_AI_REQUEST_MAX_TOKENS] == 300
    assert responses["openai.api.type"] == "responses"
    assert claude[ga.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert claude[ga.GEN_AI_REQUEST_STOP_SEQUENCES] == ["END"]
    assert "openai.api.type" not in claude


def test_content_attributes_only_when_asked(recording: Recording) -> None:
    (chat, _), (answer, seen_answer), (responses, _), _, (claude, seen_claude), *_ = _calls(
        recording
    )
    attrs = _genai.span_attributes(chat, capture_content=True)[1]
    messages = json.loads(attrs[ga.GEN_AI_INPUT_MESSAGES])
    assert messages[0] == {
        "role": "system",
        "parts": [{"type": "text", "content": "You are a terse weather bot."}],
    }
    assert messages[1]["parts"][0]["content"] == "What is the weather in Paris and Tokyo?"
    output = json.loads(attrs[ga.GEN_AI_OUTPUT_MESSAGES])
    assert output[0]["finish_reason"] == "tool_call"
    calls = [p for p in output[0]["parts"] if p["type"] == "tool_call"]
    assert [(c["name"], c["arguments"]) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Tokyo"}),
    ]
    tools = json.loads(attrs[ga.GEN_AI_TOOL_DEFINITIONS])
    assert tools == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]

    streamed = _genai.span_attributes(answer, capture_content=True)[1]
    history = json.loads(streamed[ga.GEN_AI_INPUT_MESSAGES])
    assert [m["role"] for m in history] == ["system", "user", "assistant", "tool", "tool"]
    assert history[3]["parts"][0]["type"] == "tool_call_response"
    final = json.loads(streamed[ga.GEN_AI_OUTPUT_MESSAGES])
    assert final == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": seen_answer["text"]}],
            "finish_reason": "stop",
        }
    ]

    instructions = _genai.span_attributes(responses, capture_content=True)[1]
    assert json.loads(instructions[ga.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Use tools when you can."}
    ]
    anthropic = _genai.span_attributes(claude, capture_content=True)[1]
    assert json.loads(anthropic[ga.GEN_AI_SYSTEM_INSTRUCTIONS])[0]["content"] == (
        "You are a careful assistant."
    )
    output = json.loads(anthropic[ga.GEN_AI_OUTPUT_MESSAGES])
    assert output[0]["parts"] == [{"type": "text", "content": seen_claude["text"]}]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("span_only", True), ("false", False), ("", False)],
)
def test_capture_content_from_env(value: str, expected: bool) -> None:
    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": value}
    assert _genai.capture_content_from_env(env) is expected
    assert _genai.capture_content_from_env({}) is False


def test_other_calls_get_nothing(recording: Recording) -> None:
    weather = [
        e for e in recording.document["events"] if "/weather" in e.get("request", {}).get("url", "")
    ]
    assert weather and all(_genai.span_attributes(e) is None for e in weather)
    entropy = next(e for e in recording.document["events"] if e["kind"] == "entropy")
    assert _genai.span_attributes(entropy) is None


def _event(url: str, body: Any, answer: Any = None, **response: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "seq": 1,
        "kind": "http",
        "request": {"method": "POST", "url": url, "headers": [], "body": {"json": body}},
    }
    if answer is not None or response:
        event["response"] = {"status": 200, "headers": [], **response}
        if answer is not None:
            event["response"]["body"] = {"json": answer}
    return event


CHAT_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("url", "body", "provider", "name"),
    [
        ("https://api.openai.com/v1/chat/completions", CHAT_BODY, "openai", "chat m"),
        ("http://localhost:4000/chat/completions", CHAT_BODY, "openai", "chat m"),  # litellm proxy
        ("https://api.groq.com/openai/v1/chat/completions", CHAT_BODY, "groq", "chat m"),
        ("https://openrouter.ai/api/v1/chat/completions", CHAT_BODY, "openrouter", "chat m"),
        (
            "https://acme.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-01-01",
            {"messages": [{"role": "user", "content": "hi"}]},
            "azure.ai.openai",
            "chat gpt4o-prod",
        ),
        (
            "https://api.anthropic.com/v1/messages",
            {**CHAT_BODY, "max_tokens": 9},
            "anthropic",
            "chat m",
        ),
        ("https://api.openai.com/v1/responses", {"model": "m", "input": "hi"}, "openai", "chat m"),
        (
            "https://api.openai.com/v1/embeddings",
            {"model": "text-embedding-3-small", "input": ["a"]},
            "openai",
            "embeddings text-embedding-3-small",
        ),
    ],
)
def test_provider_and_api_from_the_url_and_body(
    url: str, body: dict[str, Any], provider: str, name: str
) -> None:
    span_name, attrs = _genai.span_attributes(_event(url, body))
    assert (span_name, attrs[ga.GEN_AI_PROVIDER_NAME]) == (name, provider)


def test_embeddings_usage() -> None:
    event = _event(
        "https://api.openai.com/v1/embeddings",
        {"model": "text-embedding-3-small", "input": ["a b"], "dimensions": 256},
        {
            "model": "text-embedding-3-small",
            "data": [],
            "usage": {"prompt_tokens": 2, "total_tokens": 2},
        },
    )
    _, attrs = _genai.span_attributes(event)
    assert attrs[ga.GEN_AI_OPERATION_NAME] == "embeddings"
    assert attrs[ga.GEN_AI_USAGE_INPUT_TOKENS] == 2
    assert attrs[ga.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 256


def test_failed_calls_carry_the_error_type() -> None:
    url = "https://api.openai.com/v1/chat/completions"
    refused = _event(url, CHAT_BODY, {"error": {"message": "slow down"}})
    refused["response"]["status"] = 429
    assert _genai.span_attributes(refused)[1]["error.type"] == "429"
    broken = {**_event(url, CHAT_BODY), "error": {"type": "ConnectError", "message": "refused"}}
    name, attrs = _genai.span_attributes(broken)
    assert (name, attrs["error.type"]) == ("chat m", "ConnectError")
    assert ga.GEN_AI_RESPONSE_ID not in attrs


def test_a_stream_cut_short_keeps_what_it_said() -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "model": "claude-x",
            "usage": {"input_tokens": 7, "output_tokens": 1},
        },
    }
    text = f"event: message_start\ndata: {json.dumps(start)}\n\nevent: content_block_st"
    event = _event(
        "https://api.anthropic.com/v1/messages",
        {**CHAT_BODY, "max_tokens": 5, "stream": True},
        chunks=[{"at_ms": 3.0, "text": text[:20]}, {"at_ms": 4.0, "text": text[20:]}],
    )
    call = _genai.parse_call(event)
    assert (call.response_id, call.response_model, call.usage.input_tokens) == (
        "msg_1",
        "claude-x",
        7,
    )
    assert call.finish_reasons == []


def test_streams_split_anywhere_are_reassembled() -> None:
    chunks = [
        {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": "héllo"}}]},
        {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {
            "id": "c1",
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        },
    ]
    raw = (
        "".join(f"data: {json.dumps(c, ensure_ascii=False)}\r\n\r\n" for c in chunks)
        + "data: [DONE]\n\n"
    )
    data = raw.encode()
    cut = data.index("é".encode()) + 1  # mid-character: that chunk is stored as base64
    stored = [
        {"at_ms": 1.0, "base64": base64.b64encode(data[:cut]).decode()},
        {"at_ms": 2.0, "base64": base64.b64encode(data[cut:]).decode()},
    ]
    event = _event("http://h/v1/chat/completions", {**CHAT_BODY, "stream": True}, chunks=stored)
    call = _genai.parse_call(event, content=True)
    assert call.output_messages[0]["parts"] == [{"type": "text", "content": "héllo"}]
    assert (call.usage.input_tokens, call.usage.output_tokens) == (3, 1)


@pytest.mark.parametrize(
    "event",
    [
        _event("http://h/v1/chat/completions", {"model": "m", "messages": "nope"}),
        _event("http://h/v1/chat/completions", ["not", "an", "object"]),
        {
            "seq": 1,
            "kind": "http",
            "request": {"method": "POST", "url": "http://h/v1/messages", "body": {"text": "{oops"}},
        },
        {"seq": 1, "kind": "http", "request": "garbage"},
        {"seq": 1, "kind": "http"},
    ],
)
def test_bodies_it_does_not_understand_get_no_attributes(event: dict[str, Any]) -> None:
    assert _genai.span_attributes(event) is None


def test_a_malformed_answer_never_raises_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    weird = _event("http://h/v1/chat/completions", CHAT_BODY, chunks=[{"at_ms": 1, "text": 5}])
    with caplog.at_level(logging.DEBUG, logger="agenttrace"):
        assert _genai.span_attributes(weird) is None
    assert "no GenAI reading of event 1" in caplog.text
    odd = _event(
        "http://h/v1/chat/completions",
        CHAT_BODY,
        {"choices": "x", "usage": {"prompt_tokens": "many"}, "id": 5, "model": None},
    )
    name, attrs = _genai.span_attributes(odd)  # the request is understood, the answer is not
    assert name == "chat m" and ga.GEN_AI_USAGE_INPUT_TOKENS not in attrs


def test_tool_span_attributes() -> None:
    name, attrs = _genai.tool_span_attributes(
        {
            "seq": 4,
            "kind": "tool",
            "name": "db.query",
            "call_id": "call_9",
            "error": {"type": "TimeoutError"},
        }
    )
    assert name == "execute_tool db.query"
    assert attrs == {
        ga.GEN_AI_OPERATION_NAME: "execute_tool",
        ga.GEN_AI_TOOL_NAME: "db.query",
        ga.GEN_AI_TOOL_TYPE: "function",
        ga.GEN_AI_TOOL_CALL_ID: "call_9",
        "error.type": "TimeoutError",
    }


# -- tokens and cost ------------------------------------------------------------------------------


def _expected_price(seen: dict[str, Any]) -> float:
    genai_prices = pytest.importorskip("genai_prices")  # the [cost] extra needs Python 3.11+
    provider = "anthropic" if seen["api"] == "anthropic" else "openai"
    usage = genai_prices.Usage(
        input_tokens=seen["input"],
        output_tokens=seen["output"],
        cache_read_tokens=seen["cached"] or None,
        cache_write_tokens=seen.get("cache_write") or None,
    )
    return float(genai_prices.calc_price(usage, seen["model"], provider_id=provider).total_price)


def test_cost_per_call_and_per_run(recording: Recording) -> None:
    priced = 0.0
    for event, seen in _calls(recording):
        cost = _cost.call_cost(_genai.parse_call(event))
        if seen["model"] == "my-local-llm":
            assert cost is None  # unknown model: tokens, never a guessed price
        else:
            assert cost == pytest.approx(_expected_price(seen), rel=1e-9)
            assert cost > 0
            priced += cost
    totals = _cost.run_totals(recording.document["events"])
    assert (totals.calls, totals.llm_calls) == (9, 7)
    seen = recording.seen
    assert totals.usage.input_tokens == sum(s["input"] for s in seen)
    assert totals.usage.output_tokens == sum(s["output"] for s in seen)
    assert totals.usage.cache_read_tokens == sum(s["cached"] for s in seen)
    assert totals.cost_usd == pytest.approx(priced, rel=1e-9)
    assert totals.unpriced_models == ["my-local-llm"]
    assert totals.by_model["my-local-llm"].usage.output_tokens == seen[-1]["output"]
    assert totals.pricing == f"genai-prices {pytest.importorskip('genai_prices').__version__}"
    attrs = totals.span_attributes()
    assert attrs["agenttrace.run.llm_calls"] == 7
    assert attrs["agenttrace.run.usage.input_tokens"] == totals.usage.input_tokens
    assert attrs["agenttrace.run.cost_usd"] == pytest.approx(priced)
    assert json.loads(json.dumps(totals.to_json()))["unpriced_models"] == ["my-local-llm"]


def test_without_the_price_table_runs_have_tokens_and_no_cost(
    recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cost, "_prices", lambda: None)
    _cost._price.cache_clear()
    try:
        totals = _cost.run_totals(recording.document["events"])
    finally:
        _cost._price.cache_clear()
    assert totals.cost_usd is None and totals.pricing is None
    assert totals.usage.input_tokens == sum(s["input"] for s in recording.seen)


def test_prices_work_offline(tmp_path: Path) -> None:
    """The bundled table prices a call in a process with no network at all."""
    pytest.importorskip("genai_prices")
    result = run_python(
        """
        import socket
        def no_network(*args, **kwargs):
            raise OSError("network is off")
        socket.socket.connect = no_network
        socket.getaddrinfo = no_network
        from agenttrace import _cost, _genai
        call = _genai.LLMCall(api="openai.chat_completions", provider="openai", operation="chat",
                              request_model="gpt-4o-mini",
                              usage=_genai.Usage(input_tokens=1000, output_tokens=100))
        print(_cost.call_cost(call))
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) > 0


def test_a_responses_stream_without_event_names_still_reports_usage() -> None:
    """Some gateways forward the data lines only; the usage in response.completed is still read."""
    done = {
        "type": "response.completed",
        "response": {"id": "resp_1", "model": "m", "status": "completed", "output": []}
        | {"usage": {"input_tokens": 4, "output_tokens": 2}},
    }
    deltas = [{"type": "response.output_text.delta", "delta": "hi"}] * 3
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in [*deltas, done])
    event = _event(
        "http://gateway/v1/responses",
        {"model": "m", "input": "x", "stream": True},
        chunks=[{"at_ms": 1.0, "text": text}],
    )
    call = _genai.parse_call(event)
    assert (call.response_id, call.usage.input_tokens, call.usage.output_tokens) == ("resp_1", 4, 2)
    assert call.finish_reasons == ["stop"]
