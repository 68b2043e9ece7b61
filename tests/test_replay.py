"""Replay and governance end to end: record a real agent against a real local server, then
replay it offline in a fresh process and compare what the agent printed, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_python

AGENT = """
import asyncio, json, os, random, secrets, sys, urllib.request, uuid
import anthropic, httpx2, openai, requests
import agenttrace

agenttrace.init()
URL = os.environ["URL"]
CITY = os.environ.get("CITY", "Paris")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

@agenttrace.run(name="full_agent")
def main():
    run_id = uuid.uuid4()
    print("run", run_id, secrets.token_hex(8), random.random(), random.Random().random())
    client = openai.OpenAI(base_url=URL + "/v1", api_key="sk-test-not-real")
    messages = [{"role": "user", "content": f"What is the weather in {CITY}?"}]
    with agenttrace.step("Planning", type="llm"):
        first = client.chat.completions.create(model="m", messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    print("tool call", call.id, call.function.name, call.function.arguments)
    with agenttrace.step("Weather", type="tool_call"):
        city = json.loads(call.function.arguments)["city"]
        weather = requests.get(URL + "/weather", params={"city": city}).json()
    print("weather", weather)
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": json.dumps(weather)}]
    with agenttrace.step("Answer", type="llm"):
        pieces = []
        for chunk in client.chat.completions.create(model="m", messages=messages, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    print("answer", "".join(pieces), len(pieces))
    claude = anthropic.Anthropic(base_url=URL, api_key="sk-ant-test-not-real")
    msg = claude.messages.create(model="c", max_tokens=50, messages=[{"role": "user", "content": "Say hi"}])
    print("claude", msg.content[0].text)
    with claude.messages.stream(model="c", max_tokens=50, messages=[{"role": "user", "content": "Stream hi"}]) as stream:
        print("claude stream", "".join(stream.text_stream))
    async def async_llm():
        aclient = openai.AsyncOpenAI(base_url=URL + "/v1", api_key="sk-test-not-real")
        parts = []
        async for chunk in await aclient.chat.completions.create(model="m", messages=messages[:1], stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts)
    print("async stream", asyncio.run(async_llm()))
    async def fan_out():
        async with httpx2.AsyncClient() as http:
            rs = await asyncio.gather(*[http.get(URL + f"/weather?city={c}") for c in ("Oslo", "Lima", "Rome")])
            return [r.json()["city"] for r in rs]
    print("parallel", asyncio.run(fan_out()))
    with urllib.request.urlopen(URL + "/weather?city=Quito") as r:
        print("urllib", r.status, json.loads(r.read())["city"])
    print("end", uuid.uuid4())

main()
"""


def record(tmp_path: Path, server, script: str = AGENT, env: dict | None = None):
    result = run_python(script, env={"URL": server.url, **(env or {})}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result


def replay(tmp_path: Path, server, level: str, script: str = AGENT, env: dict | None = None):
    return run_python(
        script,
        env={
            "URL": server.url,
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_GOVERNANCE_LEVEL": level,
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(tmp_path / ".agenttrace" / "last.json"),
            **(env or {}),
        },
        cwd=tmp_path,
    )


def replays_identically(
    tmp_path: Path, server, script: str = AGENT, env: dict | None = None, level: str = "governance"
):
    """Record, replay, and check the replay exited 0 printing exactly what the recording did."""
    recorded = record(tmp_path, server, script, env)
    replayed = replay(tmp_path, server, level, script, env)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    return recorded, replayed


@pytest.mark.parametrize("level", ["governance", "relaxed"])
def test_full_agent_replays_byte_identical_with_no_requests(tmp_path, llm_server, level):
    recorded = record(tmp_path, llm_server)
    doc = json.loads((tmp_path / ".agenttrace" / "last.json").read_text())
    clients = {e["client"] for e in doc["events"] if e["kind"] == "http"}
    assert {"httpx2", "urllib3", "http.client"} <= clients, clients
    assert len([e for e in doc["events"] if e["kind"] == "http"]) == 10
    served_before = llm_server.request_count

    replayed = replay(tmp_path, llm_server, level)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert llm_server.request_count == served_before
    assert "WARNING" not in replayed.stderr
    replay_doc = json.loads((tmp_path / ".agenttrace" / "replays" / "last.json").read_text())
    assert [e["request"]["url"] for e in replay_doc["events"] if e["kind"] == "http"] == [
        e["request"]["url"] for e in doc["events"] if e["kind"] == "http"
    ]


def test_replay_works_with_the_server_gone(tmp_path, llm_server):
    recorded = record(tmp_path, llm_server)
    llm_server.stop()
    replayed = replay(tmp_path, llm_server, "governance")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout


SWALLOWING_AGENT = """
import os, httpx2, agenttrace
agenttrace.init()
URL = os.environ["URL"]
with agenttrace.step("Lookup", type="tool_call"):
    try:
        r = httpx2.post(URL + "/echo", json={"city": os.environ.get("CITY", "Paris"), "units": "metric"})
        print("status", r.status_code)
    except Exception as exc:  # the kind of catch-all agents and frameworks have
        print("swallowed", type(exc).__name__)
print("finished")
"""


def test_changed_input_fails_governance_naming_the_request_even_if_caught(tmp_path, llm_server):
    record(tmp_path, llm_server, SWALLOWING_AGENT)
    served = llm_server.request_count
    result = replay(tmp_path, llm_server, "governance", SWALLOWING_AGENT, env={"CITY": "Berlin"})
    assert result.returncode != 0
    assert llm_server.request_count == served
    assert "swallowed" not in result.stdout  # a BaseException: `except Exception` cannot eat it
    err = result.stderr
    assert "ReplayDivergence" in err
    assert f"POST {llm_server.url}/echo in step 'Lookup'" in err
    assert 'body.city: recorded "Paris", now "Berlin"' in err
    assert "FAILED" in err


def test_divergence_caught_as_base_exception_still_fails_at_exit(tmp_path, llm_server):
    script = SWALLOWING_AGENT.replace("except Exception", "except BaseException")
    record(tmp_path, llm_server, script)
    result = replay(tmp_path, llm_server, "governance", script, env={"CITY": "Berlin"})
    assert "swallowed ReplayDivergence" in result.stdout
    assert "finished" in result.stdout
    assert result.returncode != 0
    assert "replay under governance FAILED" in result.stderr


def test_changed_input_in_relaxed_mode_warns_and_goes_live(tmp_path, llm_server):
    record(tmp_path, llm_server, SWALLOWING_AGENT)
    served = llm_server.request_count
    result = replay(tmp_path, llm_server, "relaxed", SWALLOWING_AGENT, env={"CITY": "Berlin"})
    assert result.returncode == 0, result.stderr
    assert "status 200" in result.stdout
    assert llm_server.request_count == served + 1
    assert "WARNING" in result.stderr and "/echo" in result.stderr
    replay_doc = json.loads((tmp_path / ".agenttrace" / "replays" / "last.json").read_text())
    bodies = [
        e["request"]["body"]["json"]["city"] for e in replay_doc["events"] if e["kind"] == "http"
    ]
    assert bodies == ["Berlin"]  # the live call is recorded into the replayed run


LEAKY_AGENT = """
import os, socket, subprocess, agenttrace
agenttrace.init()
leak = os.environ.get("LEAK")
print("start", os.urandom(4).hex())
try:
    if leak == "dns":
        socket.getaddrinfo("localhost", 80)
    elif leak == "socket":
        s = socket.socket(); s.settimeout(1)
        s.connect(("127.0.0.1", int(os.environ["PORT"]))); s.close()
    elif leak == "subprocess":
        subprocess.run(["true"])
    elif leak == "system":
        os.system("true")
    elif leak == "urandom":
        os.urandom(4)
except Exception as exc:
    print("caught", type(exc).__name__)
print("end")
"""


@pytest.mark.parametrize("leak", ["dns", "socket", "subprocess", "system", "urandom"])
def test_sandbox_leaks_halt_under_governance_and_warn_when_relaxed(tmp_path, llm_server, leak):
    record(tmp_path, llm_server, LEAKY_AGENT)
    env = {"LEAK": leak, "PORT": str(llm_server.port)}
    strict = replay(tmp_path, llm_server, "governance", LEAKY_AGENT, env=env)
    assert strict.returncode != 0, strict.stdout
    assert "SandboxEscape" in strict.stderr
    assert "end" not in strict.stdout.split()
    relaxed = replay(tmp_path, llm_server, "relaxed", LEAKY_AGENT, env=env)
    assert relaxed.returncode == 0, relaxed.stderr
    assert "WARNING" in relaxed.stderr
    assert relaxed.stdout.splitlines()[-1] == "end"


def test_recorded_calls_never_made_fail_governance_and_warn_when_relaxed(tmp_path, llm_server):
    script = """
import os, httpx2, agenttrace
agenttrace.init()
httpx2.get(os.environ["URL"] + "/weather?city=Oslo")
if not os.environ.get("SKIP"):
    httpx2.get(os.environ["URL"] + "/weather?city=Rome")
"""
    record(tmp_path, llm_server, script)
    strict = replay(tmp_path, llm_server, "governance", script, env={"SKIP": "1"})
    assert strict.returncode != 0
    assert "1 recorded call(s) were never made" in strict.stderr
    assert "city=Rome" in strict.stderr
    relaxed = replay(tmp_path, llm_server, "relaxed", script, env={"SKIP": "1"})
    assert relaxed.returncode == 0
    assert "WARNING" in relaxed.stderr and "never made" in relaxed.stderr


def test_recorded_errors_replay_as_the_same_exceptions(tmp_path, llm_server, free_port):
    script = """
import os, httpx2, agenttrace
agenttrace.init()
try:
    httpx2.get(f"http://127.0.0.1:{os.environ['DEAD']}/")
except httpx2.ConnectError as exc:
    print("connect error", type(exc).__name__)
try:
    httpx2.get(os.environ["URL"] + "/slow?seconds=2", timeout=0.2)
except httpx2.ReadTimeout as exc:
    print("timeout", type(exc).__name__)
print(httpx2.get(os.environ["URL"] + "/status/404").status_code)
"""
    env = {"DEAD": str(free_port)}
    recorded, _ = replays_identically(tmp_path, llm_server, script, env)
    assert recorded.stdout == "connect error ConnectError\ntimeout ReadTimeout\n404\n"


def test_machine_probes_of_sdks_and_uuid1_are_not_sandbox_escapes(tmp_path, llm_server):
    # platform.processor() runs `uname -p` (the OpenAI/Anthropic SDKs call it for their headers)
    # and uuid.getnode() may run `ip link`: facts about the machine, not agent I/O.
    script = """
import platform, uuid, agenttrace
agenttrace.init()
print(bool(platform.processor() is not None), uuid.uuid1().node == uuid.getnode())
"""
    _, replayed = replays_identically(tmp_path, llm_server, script)
    assert "SandboxEscape" not in replayed.stderr


PARALLEL_TOOLS = """
import asyncio, os, uuid
import httpx2, agenttrace
agenttrace.init()
URL = os.environ["URL"]

async def tool(client, i):
    # Live, the calls finish in reverse order; replayed, they are answered at once. Each task
    # must still get back the uuid it drew, or its next request differs from the recording.
    await client.get(f"{URL}/slow?seconds={0.05 * (3 - i)}")
    call_id = str(uuid.uuid4())
    await client.post(f"{URL}/echo", json={"tool": i, "call_id": call_id})
    return i, call_id

async def main():
    async with httpx2.AsyncClient() as client:
        print(await asyncio.gather(*[tool(client, i) for i in range(3)]))

asyncio.run(main())
"""


def test_parallel_tasks_get_back_their_own_entropy(tmp_path, llm_server):
    replays_identically(tmp_path, llm_server, PARALLEL_TOOLS)


DROPPING_AGENT = """
import os, httpx2, agenttrace
agenttrace.init()
with agenttrace.step("bin", filter=lambda event: None):  # keep nothing of these calls
    print(len(httpx2.get(os.environ["URL"] + "/binary").content))
"""


def test_an_answer_dropped_by_a_filter_cannot_be_replayed_silently(tmp_path, llm_server):
    recorded = record(tmp_path, llm_server, DROPPING_AGENT)
    assert recorded.stdout == "256\n"
    strict = replay(tmp_path, llm_server, "governance", DROPPING_AGENT)
    assert strict.returncode != 0
    assert "payloads were dropped by a step filter" in strict.stderr and "'bin'" in strict.stderr
    relaxed = replay(tmp_path, llm_server, "relaxed", DROPPING_AGENT)
    assert relaxed.returncode == 0, relaxed.stderr
    assert relaxed.stdout == "0\n"  # only the status survived the filter
    assert "WARNING" in relaxed.stderr and "dropped by a step filter" in relaxed.stderr


THREADED_TOOLS = """
import os, uuid
from concurrent.futures import ThreadPoolExecutor
import requests, agenttrace
agenttrace.init()
URL = os.environ["URL"]

def tool(i):
    # Live, the jobs finish in reverse order (and run on whichever worker is free); replayed,
    # they are answered at once. Each job must still get back the uuid it drew.
    requests.get(f"{URL}/slow", params={"seconds": 0.05 * (3 - i)})
    call_id = str(uuid.uuid4())
    requests.post(f"{URL}/echo", json={"tool": i, "call_id": call_id})
    return i, call_id

with ThreadPoolExecutor(3) as pool:
    print(list(pool.map(tool, range(3))))
"""


def test_parallel_thread_jobs_get_back_their_own_entropy(tmp_path, llm_server):
    replays_identically(tmp_path, llm_server, THREADED_TOOLS)


ASYNC_DNS_THEN_JOBS = """
import asyncio, os, uuid
import httpx2, requests, agenttrace
agenttrace.init()
URL = os.environ["URL"]

def job(i):
    requests.get(f"{URL}/slow", params={"seconds": 0.05 * (2 - i)})
    return i, str(uuid.uuid4())

async def main():
    # "localhost" is resolved in asyncio's default executor when recording, not in replay: that
    # must not renumber the agent's own executor jobs.
    async with httpx2.AsyncClient() as client:
        await client.get(URL.replace("127.0.0.1", "localhost") + "/weather?city=Oslo")
    print(await asyncio.gather(*[asyncio.to_thread(job, i) for i in range(2)]))

asyncio.run(main())
"""


def test_executor_work_inside_a_call_does_not_renumber_the_agents_jobs(tmp_path, llm_server):
    replays_identically(tmp_path, llm_server, ASYNC_DNS_THEN_JOBS)
