"""GenAI attributes as an OTLP backend receives them from a recorded agent.

The agent prints the usage its SDK parsed from each answer; the spans a real OTLP/HTTP receiver
got must carry the same numbers under the GenAI semantic-convention names.
"""

from __future__ import annotations

import json

import pytest
from _otlp_receiver import OTLPReceiver
from conftest import run_python

AGENT = """
import json, os
import agenttrace
agenttrace.init()
import anthropic, openai

URL = os.environ["URL"]
oa = openai.OpenAI(base_url=URL + "/v1", api_key="sk-local")
an = anthropic.Anthropic(base_url=URL, api_key="sk-ant-local")
tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
seen = []

with agenttrace.run(name="genai_agent"):
    r = oa.chat.completions.create(model="gpt-4o-mini", temperature=0.2, max_tokens=64,
        messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[tool])
    seen.append(("chat", r.id, r.usage.prompt_tokens, r.usage.completion_tokens))
    stream = oa.chat.completions.create(model="gpt-4o-mini", stream=True,
        stream_options={"include_usage": True}, messages=[{"role": "user", "content": "Hi there"}])
    usage = [c.usage for c in stream if c.usage][-1]
    seen.append(("chat-stream", None, usage.prompt_tokens, usage.completion_tokens))
    m = an.messages.create(model="claude-sonnet-4-5", max_tokens=100,
        messages=[{"role": "user", "content": "Hello"}])
    seen.append(("anthropic", m.id, m.usage.input_tokens, m.usage.output_tokens))
    with an.messages.stream(model="claude-sonnet-4-5", max_tokens=100,
            messages=[{"role": "user", "content": "Hello again"}]) as s:
        final = s.get_final_message()
    seen.append(("anthropic-stream", final.id, final.usage.input_tokens, final.usage.output_tokens))
    resp = oa.responses.create(model="gpt-4o-mini", input="Weather in Oslo?")
    seen.append(("responses", resp.id, resp.usage.input_tokens, resp.usage.output_tokens))
print(json.dumps(seen))
"""


@pytest.fixture
def receiver():
    with OTLPReceiver() as r:
        yield r


def _record(tmp_path, llm_server, receiver, **env):
    result = run_python(
        AGENT,
        env={"URL": llm_server.url, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, **env},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    spans = receiver.wait_for(lambda s: any(x["name"] == "genai_agent" for x in s))
    ours = [
        s for s in spans if "agenttrace.seq" in s["attributes"]
    ]  # the anthropic SDK has its own
    llm = [s for s in ours if "gen_ai.operation.name" in s["attributes"]]
    return seen, llm, spans


def test_every_llm_call_reaches_the_collector_with_genai_attributes(tmp_path, llm_server, receiver):
    seen, llm, spans = _record(tmp_path, llm_server, receiver)
    assert len(llm) == len(seen) == 5
    for (what, response_id, input_tokens, output_tokens), span in zip(seen, llm, strict=True):
        attrs = span["attributes"]
        assert span["name"] == f"chat {attrs['gen_ai.request.model']}", what
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == (
            "anthropic" if what.startswith("anthropic") else "openai"
        )
        assert attrs["gen_ai.usage.input_tokens"] == input_tokens, what
        assert attrs["gen_ai.usage.output_tokens"] == output_tokens, what
        if response_id:
            assert attrs["gen_ai.response.id"] == response_id, what
        assert attrs["gen_ai.response.finish_reasons"], what
        assert "gen_ai.input.messages" not in attrs  # content only when asked for
    first = llm[0]["attributes"]
    assert first["gen_ai.request.temperature"] == 0.2 and first["gen_ai.request.max_tokens"] == 64
    assert first["gen_ai.response.finish_reasons"] == ["tool_calls"]
    (root,) = [s for s in spans if s["name"] == "genai_agent"]
    assert root["attributes"]["agenttrace.run.llm_calls"] == 5
    assert root["attributes"]["agenttrace.run.usage.input_tokens"] == sum(s[2] for s in seen)


def test_message_content_goes_on_spans_only_when_enabled(tmp_path, llm_server, receiver):
    _, llm, _ = _record(
        tmp_path, llm_server, receiver, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true"
    )
    attrs = llm[0]["attributes"]
    messages = json.loads(attrs["gen_ai.input.messages"])
    assert messages[0]["role"] == "user" and "Weather in Paris?" in json.dumps(messages)
    assert "get_weather" in attrs["gen_ai.tool.definitions"]
    assert json.loads(attrs["gen_ai.output.messages"])
