"""The local test server is a faithful enough stand-in for OpenAI, Anthropic and tools.

These tests talk to it with the real SDKs and HTTP clients and never import agenttrace,
so a failure here points at the server, not at the instrumentation.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time

import anthropic
import httpx
import openai
import pytest
import requests
from conftest import EXAMPLES_DIR, run_python
from llm_server import weather_for

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ANTHROPIC_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": WEATHER_TOOL["function"]["parameters"],
}


@pytest.fixture
def oai(llm_server):
    with openai.OpenAI(base_url=llm_server.url + "/v1", api_key="sk-test", max_retries=0) as c:
        yield c


@pytest.fixture
def claude(llm_server):
    with anthropic.Anthropic(base_url=llm_server.url, api_key="sk-ant-test", max_retries=0) as c:
        yield c


def _tool_round(oai, llm_server, question: str, stream: bool = False):
    """Ask, run the requested tools against /weather, send results back; return the answer."""
    messages = [{"role": "user", "content": question}]
    first = oai.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    message = first.choices[0].message
    messages.append(message.model_dump(exclude_none=True))
    for call in message.tool_calls:
        city = json.loads(call.function.arguments)["city"]
        result = requests.get(f"{llm_server.url}/weather", params={"city": city}, timeout=5)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result.text})
    final = oai.chat.completions.create(
        model="m", messages=messages, tools=[WEATHER_TOOL], stream=stream
    )
    if stream:
        return first, "".join(c.choices[0].delta.content or "" for c in final if c.choices)
    return first, final.choices[0].message.content


# ------------------------------------------------------------------ OpenAI


def test_openai_plain_completion(oai, llm_server):
    reply = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello! You said: hi"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens > 0
    assert llm_server.request_count == 1
    method, path, body = llm_server.requests[0]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert json.loads(body)["messages"][0]["content"] == "hi"


def test_openai_tool_round_trip(oai, llm_server):
    first, answer = _tool_round(oai, llm_server, "What's the weather in Paris today?")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_")
    weather = requests.get(f"{llm_server.url}/weather?city=Paris", timeout=5).json()
    assert f"In Paris it is {weather['temperature_c']} C and {weather['conditions']}." in answer
    assert llm_server.request_count == 4  # ask, tool, answer, and our own check


def test_openai_answers_are_deterministic(oai, llm_server):
    first_a, answer_a = _tool_round(oai, llm_server, "Weather in Oslo and New York?")
    first_b, answer_b = _tool_round(oai, llm_server, "Weather in Oslo and New York?")
    calls = first_a.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Oslo", "New York"]
    assert [c.id for c in calls] == [c.id for c in first_b.choices[0].message.tool_calls]
    assert len({c.id for c in calls}) == 2
    assert answer_a == answer_b
    other, _ = _tool_round(oai, llm_server, "Weather in Rome?")
    assert other.choices[0].message.tool_calls[0].id != calls[0].id


def test_openai_stream_yields_text(oai, llm_server):
    _, answer = _tool_round(oai, llm_server, "Weather in Tokyo?", stream=True)
    assert answer.startswith("Here is what I found. In Tokyo it is ")
    reply = oai.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "tell me something"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(reply)
    tokens = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(tokens) == "Hello! You said: tell me something"
    assert len(tokens) > 3
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(tokens)


def test_openai_streamed_tool_calls(oai):
    messages = [{"role": "user", "content": "Weather in Berlin and Lima?"}]
    with oai.chat.completions.stream(model="m", messages=messages, tools=[WEATHER_TOOL]) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Berlin"},
        {"city": "Lima"},
    ]
    # Same request, non-streamed: same tool-call ids.
    plain = oai.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    assert [c.id for c in plain.choices[0].message.tool_calls] == [c.id for c in calls]


def test_openai_stream_is_not_buffered(oai, llm_server):
    llm_server.chunk_delay = 0.05
    start = time.monotonic()
    stream = oai.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "one two three four five six"}],
        stream=True,
    )
    arrivals = [time.monotonic() - start for _ in stream]
    assert len(arrivals) >= 8
    # The first chunk shows up long before the last one: chunks are flushed as produced.
    assert arrivals[-1] - arrivals[0] >= 0.05 * (len(arrivals) - 2)


def test_openai_forced_error(oai):
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="error-429", messages=[{"role": "user", "content": "x"}])


def test_openai_usage_reports_cached_and_reasoning_tokens(oai):
    messages = [
        {"role": "system", "content": "you answer briefly"},
        {"role": "user", "content": "hi"},
    ]
    plain = oai.chat.completions.create(model="m", messages=messages)
    assert plain.usage.prompt_tokens == 4
    assert plain.usage.prompt_tokens_details.cached_tokens == 3  # the system prompt
    assert plain.usage.completion_tokens_details.reasoning_tokens == 0
    thinking = oai.chat.completions.create(model="m", messages=messages, reasoning_effort="low")
    assert thinking.usage.completion_tokens_details.reasoning_tokens == 16
    assert thinking.usage.completion_tokens == plain.usage.completion_tokens + 16


# ------------------------------------------------------------------ OpenAI Responses

RESPONSES_WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    **{"parameters": WEATHER_TOOL["function"]["parameters"]},
}


def test_responses_create(oai, llm_server):
    reply = oai.responses.create(model="m", input="hi there", instructions="be brief")
    assert reply.output_text == "Hello! You said: hi there"
    assert reply.status == "completed" and reply.id.startswith("resp_")
    usage = reply.usage
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (4, 2)
    assert usage.output_tokens == 5 and usage.output_tokens_details.reasoning_tokens == 0
    assert llm_server.requests[-1][:2] == ("POST", "/v1/responses")


def test_responses_tool_round_trip(oai, llm_server):
    question = [{"role": "user", "content": "Weather in Oslo and Lima?"}]
    first = oai.responses.create(
        model="m", input=question, tools=[RESPONSES_WEATHER_TOOL], reasoning={"effort": "low"}
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Oslo"}, {"city": "Lima"}]
    assert first.usage.output_tokens_details.reasoning_tokens == 16
    results = [
        {"type": "function_call_output", "call_id": c.call_id, "output": json.dumps(w)}
        for c, w in zip(calls, [weather_for("Oslo"), weather_for("Lima")], strict=True)
    ]
    history = question + [c.model_dump(exclude_none=True) for c in calls] + results
    final = oai.responses.create(model="m", input=history, tools=[RESPONSES_WEATHER_TOOL])
    assert "In Oslo it is" in final.output_text and "In Lima it is" in final.output_text


def test_responses_stream(oai):
    events = list(oai.responses.create(model="m", input="stream me", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello! You said: stream me" and len(deltas) > 1
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.usage.output_tokens == len(deltas)

    with oai.responses.stream(
        model="m", input="Weather in Rome?", tools=[RESPONSES_WEATHER_TOOL]
    ) as s:
        for _ in s:
            pass
        final = s.get_final_response()
    assert json.loads(final.output[0].arguments) == {"city": "Rome"}


# ------------------------------------------------------------------ Anthropic


def test_anthropic_messages_create(claude, llm_server):
    reply = claude.messages.create(
        model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
    )
    assert reply.content[0].text == "Hello! You said: hello"
    assert reply.stop_reason == "end_turn"
    assert llm_server.requests[-1][:2] == ("POST", "/v1/messages")


def test_anthropic_tool_use_round_trip(claude, llm_server):
    messages = [{"role": "user", "content": "What is the weather in Madrid?"}]
    first = claude.messages.create(
        model="c", max_tokens=64, messages=messages, tools=[ANTHROPIC_WEATHER_TOOL]
    )
    assert first.stop_reason == "tool_use"
    use = first.content[0]
    assert (use.type, use.name, use.input) == ("tool_use", "get_weather", {"city": "Madrid"})
    weather = httpx.get(f"{llm_server.url}/weather", params={"city": "Madrid"}).text
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": weather}],
        },
    ]
    final = claude.messages.create(
        model="c", max_tokens=64, messages=messages, tools=[ANTHROPIC_WEATHER_TOOL]
    )
    assert "In Madrid it is" in final.content[0].text


def test_anthropic_messages_stream(claude):
    with claude.messages.stream(
        model="c", max_tokens=64, messages=[{"role": "user", "content": "stream please"}]
    ) as stream:
        text = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(text) == "Hello! You said: stream please"
    assert len(text) > 1
    assert final.content[0].text == "".join(text)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(text)


def test_anthropic_streamed_tool_use(claude):
    with claude.messages.stream(
        model="c",
        max_tokens=64,
        messages=[{"role": "user", "content": "Weather in Cairo?"}],
        tools=[ANTHROPIC_WEATHER_TOOL],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.stop_reason == "tool_use"
    assert final.content[0].input == {"city": "Cairo"}


def test_anthropic_create_stream_true(claude):
    events = list(
        claude.messages.create(
            model="c", max_tokens=64, messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert [e.type for e in events][:2] == ["message_start", "content_block_start"]
    assert [e.type for e in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_anthropic_usage_reports_cache_tokens(claude):
    system = [
        {"type": "text", "text": "a long cached system", "cache_control": {"type": "ephemeral"}}
    ]
    content = [
        {"type": "text", "text": "cache these words ", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "hi"},
    ]
    messages = [{"role": "user", "content": content}]
    reply = claude.messages.create(model="c", max_tokens=64, system=system, messages=messages)
    usage = reply.usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (4, 3)
    assert usage.input_tokens == 1
    with claude.messages.stream(model="c", max_tokens=64, system=system, messages=messages) as s:
        streamed = s.get_final_message().usage
    assert streamed.model_dump() == usage.model_dump()


# ------------------------------------------------------------------ tool endpoints


def test_weather_endpoint(llm_server):
    data = requests.get(f"{llm_server.url}/weather", params={"city": "Paris"}, timeout=5).json()
    assert data["city"] == "Paris"
    assert set(data) >= {"temperature_c", "conditions", "humidity"}
    assert httpx.get(f"{llm_server.url}/weather?city=Paris").json() == data
    assert requests.get(f"{llm_server.url}/weather", timeout=5).status_code == 400


def test_echo_returns_body_and_headers(llm_server):
    r = requests.post(
        f"{llm_server.url}/echo?x=1",
        json={"password": "hunter2", "n": 1},
        headers={"X-Custom": "yes", "Authorization": "Bearer abc"},
        timeout=5,
    )
    data = r.json()
    assert data["method"] == "POST" and data["path"] == "/echo" and data["query"] == {"x": "1"}
    assert data["json"] == {"password": "hunter2", "n": 1}
    assert data["headers"]["x-custom"] == "yes"
    assert data["headers"]["authorization"] == "Bearer abc"
    assert llm_server.requests[-1].headers["x-custom"] == "yes"
    assert json.loads(llm_server.requests[-1].body) == {"password": "hunter2", "n": 1}


def test_gzip_is_decoded_by_clients(llm_server):
    url = f"{llm_server.url}/gzip"
    r = requests.get(url, timeout=5)
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.json()["compressed"] is True
    assert httpx.get(url).json() == r.json()
    raw = requests.get(url, stream=True, timeout=5).raw.read(decode_content=False)
    assert json.loads(gzip.decompress(raw)) == r.json()


def test_binary(llm_server):
    r = httpx.get(f"{llm_server.url}/binary")
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == bytes(range(256))


@pytest.mark.parametrize("code", [404, 429, 500, 503])
def test_status_codes(llm_server, code):
    r = requests.get(f"{llm_server.url}/status/{code}", timeout=5)
    assert r.status_code == code
    assert r.json()["status"] == code
    assert httpx.post(f"{llm_server.url}/status/{code}").status_code == code


def test_slow_triggers_client_timeouts(llm_server):
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{llm_server.url}/slow?seconds=1", timeout=0.2)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{llm_server.url}/slow?seconds=1", timeout=0.2)
    assert httpx.get(f"{llm_server.url}/slow?seconds=0.1").json() == {"slept": 0.1}


def test_sse_stream(llm_server):
    url = f"{llm_server.url}/sse?n=4&delay=0.05"
    with requests.get(url, stream=True, timeout=5) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        data = [line for line in r.iter_lines() if line.startswith(b"data:")]
    assert [json.loads(d[5:]) for d in data] == [{"i": i} for i in range(4)]
    with httpx.stream("GET", url) as r:
        assert r.read().decode().count("event: tick") == 4


def test_chunked(llm_server):
    with requests.get(f"{llm_server.url}/chunked", stream=True, timeout=5) as r:
        assert r.headers["Transfer-Encoding"] == "chunked"
        text = b"".join(r.iter_content(None)).decode()
    assert text.count("\n") == 5 and text.startswith("part 0: ")
    assert httpx.get(f"{llm_server.url}/chunked").text == text


def test_keep_alive_reuses_one_connection(llm_server):
    with httpx.Client() as client:
        for _ in range(3):
            client.get(f"{llm_server.url}/weather?city=Rome")
        with client.stream("GET", f"{llm_server.url}/sse?n=2") as r:
            r.read()
        assert client.get(f"{llm_server.url}/binary").content == bytes(range(256))
    assert llm_server.request_count == 5
    assert len({r.client for r in llm_server.requests}) == 1


def test_stop_refuses_pooled_connections(llm_server):
    session = requests.Session()
    assert session.get(f"{llm_server.url}/health", timeout=5).ok
    llm_server.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(f"{llm_server.url}/health", timeout=5)
    assert llm_server.request_count == 1


def test_standalone_server_runs_as_a_script(free_port):
    script = EXAMPLES_DIR / "llm_server.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", str(free_port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert (
            proc.stdout.readline().strip()
            == f"llm_server listening on http://127.0.0.1:{free_port}"
        )
        r = requests.get(f"http://127.0.0.1:{free_port}/weather?city=Oslo", timeout=5)
        assert r.json()["city"] == "Oslo"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_run_python_helper(tmp_path):
    result = run_python(
        """
        import os, sys
        print(os.path.basename(sys.argv[0]), os.environ.get("AGENTTRACE_MODE"), os.getcwd())
        sys.exit(3)
        """,
        env={"AGENTTRACE_MODE": "replay"},
        cwd=tmp_path,
    )
    assert result.returncode == 3
    assert result.stdout.split() == ["script.py", "replay", str(tmp_path)]
