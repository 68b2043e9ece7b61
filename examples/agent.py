"""A small weather agent: the program `make demo` records and then replays.

It does what real agents do: plans, lets the model pick tools (OpenAI SDK, tool calling),
calls a tool over HTTP (requests), feeds the result back and streams the final answer.
It also draws a uuid4 run id and a random sampling temperature and sends both to the
model, so a faithful replay has to reproduce the agent's entropy as well as its I/O.

    LLM_SERVER_URL=http://127.0.0.1:8765 python examples/agent.py

Configuration comes from AGENTTRACE_* variables (mode, governance level, local store...).
"""

from __future__ import annotations

import json
import os
import random
import sys
import uuid
from typing import Any

import openai
import requests

import agenttrace

agenttrace.init()

LLM_SERVER_URL = os.environ.get("LLM_SERVER_URL", "http://127.0.0.1:8765").rstrip("/")
# A credential the weather service wants; the tool step filters it out of the trace.
WEATHER_PASSWORD = os.environ.get("WEATHER_API_PASSWORD", "demo-password-123")
MODEL = "gpt-4o-mini"
QUESTION = "What's the weather like in Paris and Tokyo right now?"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}


def log(tag: str, message: str) -> None:
    print(f"  {tag:<8} {message}", flush=True)


def plan(question: str) -> list[str]:
    with agenttrace.step("Planning", type="thought", input={"question": question}):
        steps = [
            "ask the model which tools to call",
            "call get_weather for each city",
            "stream a final answer",
        ]
        agenttrace.set_result({"plan": steps})
    log("plan", " -> ".join(steps))
    return steps


def choose_tools(client: openai.OpenAI, messages: list[dict[str, Any]], temperature: float):
    with agenttrace.step("Choose tools", type="llm", input={"model": MODEL}):
        reply = client.chat.completions.create(
            model=MODEL, messages=messages, tools=[WEATHER_TOOL], temperature=temperature
        )
        message = reply.choices[0].message
        calls = message.tool_calls or []
        agenttrace.set_result({"tool_calls": [c.function.model_dump() for c in calls]})
    for call in calls:
        log("llm", f"wants {call.function.name}({call.function.arguments})")
    return message, calls


def get_weather(city: str) -> dict[str, Any]:
    with agenttrace.step(
        "get_weather",
        type="tool_call",
        input={"city": city, "password": WEATHER_PASSWORD},
        filter=["password"],
    ):
        response = requests.get(
            f"{LLM_SERVER_URL}/weather",
            params={"city": city, "password": WEATHER_PASSWORD},
            timeout=10,
        )
        response.raise_for_status()
        weather = response.json()
        agenttrace.set_result(weather)
    log("tool", f"get_weather({city}) -> {weather['temperature_c']} C, {weather['conditions']}")
    log("advice", f"{city}: {advice_for(weather['conditions'])}")
    return weather


# A function boundary: what no HTTP instrumentor sees (here a database) is recorded as a tool
# call, and in replay its recorded result is returned without running the body.
@agenttrace.tool(name="advice.lookup")
def advice_for(conditions: str) -> str:
    import sqlite3

    with sqlite3.connect(":memory:") as db:
        db.execute("create table advice (conditions text, advice text)")
        db.executemany(
            "insert into advice values (?, ?)",
            [("rain", "take an umbrella"), ("snow", "wear boots"), ("sun", "wear sunscreen")],
        )
        row = db.execute(
            "select advice from advice where ? like '%' || conditions || '%'", (conditions,)
        ).fetchone()
    return row[0] if row else "enjoy your day"


def stream_answer(client: openai.OpenAI, messages: list[dict[str, Any]], temperature: float) -> str:
    with agenttrace.step("Answer", type="llm", input={"model": MODEL, "stream": True}):
        stream = client.chat.completions.create(
            model=MODEL, messages=messages, temperature=temperature, stream=True
        )
        print("  answer   ", end="", flush=True)
        tokens = []
        for chunk in stream:
            token = chunk.choices[0].delta.content if chunk.choices else None
            if token:
                tokens.append(token)
                print(token, end="", flush=True)
        print(flush=True)
        answer = "".join(tokens)
        agenttrace.set_result({"answer": answer, "tokens": len(tokens)})
    return answer


@agenttrace.run(name="weather_agent")
def main() -> int:
    run_id = uuid.uuid4()
    # A little sampling jitter, as agents often add; replay must reproduce it exactly.
    temperature = round(0.2 + random.random() * 0.6, 4)
    print(f"weather_agent  run={run_id}  temperature={temperature}", flush=True)
    log("question", QUESTION)

    plan(QUESTION)
    client = openai.OpenAI(base_url=f"{LLM_SERVER_URL}/v1", api_key="sk-demo", max_retries=1)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": f"You are a weather assistant. Session {run_id}."},
        {"role": "user", "content": QUESTION},
    ]
    message, calls = choose_tools(client, messages, temperature)
    messages.append(message.model_dump(exclude_none=True))
    for call in calls:
        weather = get_weather(json.loads(call.function.arguments)["city"])
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(weather)})

    answer = stream_answer(client, messages, temperature)
    print(f"done: {len(calls)} tool calls, 2 LLM calls, {len(answer)} chars answered", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
