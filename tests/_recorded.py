"""A real agent recorded against the local server: the runs that show, diff and GenAI tests read.

The agent uses the real openai SDK (chat with tools, streamed chat with usage and reasoning, the
Responses API streamed and not), the real anthropic SDK (messages with prompt caching, streamed)
and requests (a tool call whose password a step filter removes). It prints, as JSON, what the
SDKs parsed from each LLM answer, so tests compare what AgentTrace read from the recorded bytes
with what the provider's own client saw.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import run_python

AGENT = r"""
import json, os, sys
import anthropic, openai, requests
import agenttrace

agenttrace.init()
URL = os.environ["URL"]
QUESTION = os.environ.get("QUESTION", "What is the weather in Paris and Tokyo?")
seen = []

def note(api, reply, usage):
    seen.append({"api": api, "id": reply.id, "model": reply.model, **usage})

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}

@agenttrace.run(name="look_agent")
def main():
    oai = openai.OpenAI(base_url=URL + "/v1", api_key="sk-test-not-real", max_retries=0)
    with agenttrace.step("Plan", type="thought", input={"question": QUESTION}):
        agenttrace.set_result({"plan": ["tools", "answer"]})
    messages = [{"role": "system", "content": "You are a terse weather bot."},
                {"role": "user", "content": QUESTION}]
    with agenttrace.step("Choose tools", type="llm"):
        first = oai.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER],
                                            temperature=0.3, max_tokens=200, seed=7, stop=["END"])
        u = first.usage
        note("chat", first, {"finish": [c.finish_reason for c in first.choices],
             "input": u.prompt_tokens, "output": u.completion_tokens,
             "cached": u.prompt_tokens_details.cached_tokens,
             "reasoning": u.completion_tokens_details.reasoning_tokens})
    message = first.choices[0].message
    messages.append(message.model_dump(exclude_none=True))
    for call in message.tool_calls:
        city = json.loads(call.function.arguments)["city"]
        with agenttrace.step("get_weather", type="tool_call", filter=["password"]):
            weather = requests.get(URL + "/weather", params={"city": city, "password": "hunter2"},
                                   timeout=10).json()
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(weather)})
    with agenttrace.step("Answer", type="llm"):
        stream = oai.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True,
                                             stream_options={"include_usage": True},
                                             reasoning_effort="low")
        chunks = list(stream)
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        u = chunks[-1].usage
        note("chat", chunks[0], {"finish": [c.choices[0].finish_reason for c in chunks
                                             if c.choices and c.choices[0].finish_reason],
             "input": u.prompt_tokens, "output": u.completion_tokens,
             "cached": u.prompt_tokens_details.cached_tokens,
             "reasoning": u.completion_tokens_details.reasoning_tokens, "text": answer})
    tools = [{"type": "function", "name": "get_weather",
              "parameters": WEATHER["function"]["parameters"]}]
    with agenttrace.step("Responses", type="llm"):
        asked = oai.responses.create(model="gpt-4o-mini", input="Weather in Oslo?", tools=tools,
                                     instructions="Use tools when you can.", max_output_tokens=300)
        u = asked.usage
        note("responses", asked, {"finish": ["tool_call"], "input": u.input_tokens,
             "output": u.output_tokens, "cached": u.input_tokens_details.cached_tokens,
             "cache_write": u.input_tokens_details.cache_write_tokens,
             "reasoning": u.output_tokens_details.reasoning_tokens})
        call = asked.output[0]
        follow = [{"role": "user", "content": "Weather in Oslo?"}, call.model_dump(exclude_none=True),
                  {"type": "function_call_output", "call_id": call.call_id,
                   "output": json.dumps({"city": "Oslo", "temperature_c": 3, "conditions": "snow"})}]
        events = list(oai.responses.create(model="gpt-4o-mini", input=follow, tools=tools,
                                           stream=True, reasoning={"effort": "low"}))
        done = events[-1].response
        u = done.usage
        note("responses", done, {"finish": ["stop"], "input": u.input_tokens,
             "output": u.output_tokens, "cached": u.input_tokens_details.cached_tokens,
             "cache_write": u.input_tokens_details.cache_write_tokens,
             "reasoning": u.output_tokens_details.reasoning_tokens, "text": done.output_text})
    claude = anthropic.Anthropic(base_url=URL, api_key="sk-ant-not-real", max_retries=0)
    system = [{"type": "text", "text": "You are a careful assistant.",
               "cache_control": {"type": "ephemeral"}}]
    content = [{"type": "text", "text": "Remember this long context. ",
                "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Say hi"}]
    with agenttrace.step("Claude", type="llm"):
        for streamed in (False, True):
            kwargs = dict(model="claude-sonnet-4-5", max_tokens=64, stop_sequences=["END"],
                          system=system, messages=[{"role": "user", "content": content}])
            if streamed:
                with claude.messages.stream(**kwargs) as s:
                    reply = s.get_final_message()
            else:
                reply = claude.messages.create(**kwargs)
            u = reply.usage
            note("anthropic", reply, {"finish": [reply.stop_reason],
                 "input": u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens,
                 "output": u.output_tokens, "cached": u.cache_read_input_tokens,
                 "cache_write": u.cache_creation_input_tokens, "text": reply.content[0].text})
    with agenttrace.step("Local model", type="llm"):
        local = oai.chat.completions.create(model="my-local-llm",
                                            messages=[{"role": "user", "content": "ping"}])
        u = local.usage
        note("chat", local, {"finish": ["stop"], "input": u.prompt_tokens,
             "output": u.completion_tokens, "cached": u.prompt_tokens_details.cached_tokens,
             "reasoning": u.completion_tokens_details.reasoning_tokens})
    print(json.dumps({"answer": answer, "seen": seen}))
    if os.environ.get("FAIL"):
        raise RuntimeError("the agent gave up")

main()
"""


@dataclass
class Recording:
    """One run of AGENT: its trace document, where it is, and what the SDKs saw."""

    document: dict[str, Any]
    path: Path
    workdir: Path
    seen: list[dict[str, Any]]
    stdout: str
    result: subprocess.CompletedProcess[str]


def record(workdir: Path, url: str, **env: str) -> Recording:
    """Run AGENT in ``workdir`` (its local store is ``workdir/.agenttrace``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = run_python(AGENT, env={"URL": url, **env}, cwd=workdir, timeout=120)
    if not env.get("FAIL"):
        assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1]) if result.stdout.strip() else {}
    store = workdir / ".agenttrace"
    path = store / ("last-failure.json" if env.get("FAIL") else "last.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    trace_path = store / "traces" / f"{document['trace_id']}.json"
    return Recording(document, trace_path, workdir, report.get("seen", []), result.stdout, result)


def replay(recording: Recording, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Replay a recording of AGENT offline under governance, in its own directory."""
    return run_python(
        AGENT,
        env={
            "URL": url,
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(recording.path),
            **env,
        },
        cwd=recording.workdir,
        timeout=120,
    )


def llm_events(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded calls to the LLM endpoints, in order."""
    paths = ("/v1/chat/completions", "/v1/responses", "/v1/messages")
    return [
        e
        for e in document["events"]
        if e["kind"] == "http" and e["request"]["url"].split("?")[0].endswith(paths)
    ]
