"""Framework agents replay byte-identically under governance, every time.

Each agent runs for real against the local LLM server (examples/llm_server.py), prints what a
user would compare — answers, message histories with their timestamps, run and checkpoint ids —
and is replayed ten times with the server stopped. Timing differs on every replay (a served call
answers instantly), so a clock or entropy read that is not reproduced shows up here.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_python, start_server

REPLAYS = 10

PYDANTIC_AI = """
import asyncio, json, os
import agenttrace
agenttrace.init()
import requests
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

URL = os.environ["URL"]
model = OpenAIChatModel("local-model", provider=OpenAIProvider(base_url=URL + "/v1", api_key="sk-local"))

def get_weather(city: str) -> str:
    \"\"\"The weather in a city.\"\"\"
    return json.dumps(requests.get(URL + "/weather", params={"city": city}).json())

class Report(BaseModel):
    city: str
    temperature_c: int
    conditions: str

chat = Agent(model, system_prompt="You are a weather bot.", tools=[get_weather])
result = chat.run_sync("What is the weather in Paris and Oslo?")
print(result.output)
print(result.all_messages_json().decode())

structured = Agent(model, output_type=Report, tools=[get_weather])
report = structured.run_sync("What is the weather in Lima?")
print(report.output.model_dump_json())
print(report.all_messages_json().decode())

async def streamed():
    async with chat.run_stream("What is the weather in Rome?") as stream:
        async for piece in stream.stream_text(delta=True):
            print("piece", repr(piece))
        print(stream.all_messages_json().decode())

asyncio.run(streamed())
"""

LANGGRAPH = """
import datetime, os
from typing import TypedDict
import agenttrace
agenttrace.init()
import openai
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

client = openai.OpenAI(base_url=os.environ["URL"] + "/v1", api_key="sk-local")

class State(TypedDict, total=False):
    question: str
    answer: str
    asked_at: str

def ask(state):
    reply = client.chat.completions.create(
        model="local-model", messages=[{"role": "user", "content": state["question"]}]
    )
    return {"answer": reply.choices[0].message.content,
            "asked_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}

def shout(state):
    return {"answer": state["answer"].upper()}

graph = StateGraph(State)
graph.add_node("ask", ask)
graph.add_node("shout", shout)
graph.add_edge(START, "ask")
graph.add_edge("ask", "shout")
graph.add_edge("shout", END)
app = graph.compile(checkpointer=InMemorySaver())
config = {"configurable": {"thread_id": "weather-1"}}
print(app.invoke({"question": "Hi there"}, config))
print(app.invoke({"question": "How are you"}, config))
for snapshot in app.get_state_history(config):
    print(snapshot.config["configurable"]["checkpoint_id"], snapshot.created_at, snapshot.next)
"""

OPENAI_AGENTS = """
import json, os
import agenttrace
agenttrace.init()
import requests
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_trace_processors
from agents.tracing.processors import BackendSpanExporter, BatchTraceProcessor
from openai import AsyncOpenAI

URL = os.environ["URL"]
# The SDK's own tracing stays on, its ingest pointed at the local server instead of OpenAI.
set_trace_processors([BatchTraceProcessor(BackendSpanExporter(api_key="sk-local", endpoint=URL + "/v1/traces/ingest"))])

@function_tool
def get_weather(city: str) -> str:
    \"\"\"The weather in a city.\"\"\"
    return json.dumps(requests.get(URL + "/weather", params={"city": city}).json())

model = OpenAIChatCompletionsModel(model="local-model", openai_client=AsyncOpenAI(base_url=URL + "/v1", api_key="sk-local"))
agent = Agent(name="weather", instructions="You are a weather bot.", tools=[get_weather], model=model)
result = Runner.run_sync(agent, "What is the weather in Paris?")
print(result.final_output)
print(json.dumps([item.to_input_item() for item in result.new_items], sort_keys=True, default=str))
"""

AGENTS = {"pydantic-ai": PYDANTIC_AI, "langgraph": LANGGRAPH, "openai-agents": OPENAI_AGENTS}


@pytest.mark.parametrize("framework", list(AGENTS))
def test_framework_agent_replays_identically_ten_times_out_of_ten(tmp_path, framework):
    server = start_server()
    try:
        recorded = run_python(AGENTS[framework], env={"URL": server.url}, cwd=tmp_path)
        assert recorded.returncode == 0, recorded.stderr
        calls = server.request_count
    finally:
        server.stop()
    document = json.loads((tmp_path / ".agenttrace" / "last.json").read_text())
    http = [e for e in document["events"] if e["kind"] == "http"]
    assert len(http) == calls and calls >= 2  # every call the agent made is in the trace
    if framework == "openai-agents":  # its own trace export went through us too
        assert any(e["request"]["url"].endswith("/v1/traces/ingest") for e in http)
    env = {
        "URL": server.url,  # nothing listens there any more
        "AGENTTRACE_MODE": "replay",
        "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
        "AGENTTRACE_REPLAY_EVENTS_FILE": ".agenttrace/last.json",
    }
    for attempt in range(REPLAYS):
        replayed = run_python(AGENTS[framework], env=env, cwd=tmp_path)
        assert replayed.returncode == 0, (attempt, replayed.stderr)
        assert replayed.stdout == recorded.stdout, f"replay {attempt + 1} differs"
