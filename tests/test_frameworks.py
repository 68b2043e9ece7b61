"""The clients framework agents really use, recorded against a real local server and replayed
offline under governance: litellm (its own httpx client; for async calls an httpx client over its
aiohttp transport), openai's ``DefaultAioHttpClient`` (httpx2 over aiohttp) and plain aiohttp.

Each runs the agent twice in fresh processes: the replay must print exactly what the recording
did, exit 0, and reach no server (the server is stopped before the replay); the recording must
hold one event per call, captured once at the outermost client.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from test_replay import record, replay


def replays_offline(tmp_path: Path, server, script: str, env: dict | None = None):
    """Record against the live server, stop it, replay under governance: same output, exit 0,
    not one request more at the server."""
    recorded = record(tmp_path, server, script, env)
    served = server.request_count
    server.stop()
    replayed = replay(tmp_path, server, "governance", script, env)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert server.request_count == served
    return recorded, replayed


# litellm fetches its model price map from the internet at import unless told not to
LITELLM_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}

AGENT = """
import asyncio, os, sys
import agenttrace
agenttrace.init()
import aiohttp, litellm, openai
from litellm.llms.custom_httpx.aiohttp_transport import LiteLLMAiohttpTransport

URL = os.environ["URL"]
transports = []  # which transports carried the calls (litellm's aiohttp one must be among them)
original = LiteLLMAiohttpTransport.handle_async_request
async def spy(self, request):
    transports.append(type(self).__name__)
    return await original(self, request)
LiteLLMAiohttpTransport.handle_async_request = spy

kw = dict(model="openai/m", api_base=URL + "/v1", api_key="sk-test-not-real")
r = litellm.completion(messages=[{"role": "user", "content": "What is the weather in Paris?"}], **kw)
print("litellm sync", r.choices[0].message.content)

async def main():
    pieces = []
    stream = await litellm.acompletion(
        messages=[{"role": "user", "content": "Stream about Oslo"}], stream=True, **kw)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    print("litellm async stream", "".join(pieces), len(pieces))

    client = openai.AsyncOpenAI(base_url=URL + "/v1", api_key="sk-test-not-real",
                                http_client=openai.DefaultAioHttpClient())
    async with client:
        parts = []
        async for chunk in await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Stream hi"}], stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        print("openai aiohttp stream", "".join(parts), len(parts))

    async with aiohttp.ClientSession() as session:
        async with session.get(URL + "/sse") as r:
            print("aiohttp sse", [line async for line in r.content])
        async with session.post(URL + "/echo", data={"city": "Lima"}) as r:
            print("aiohttp form", r.status, await r.text())
        form = aiohttp.FormData()
        form.add_field("file", b"report bytes", filename="r.txt", content_type="text/plain")
        async with session.post(URL + "/echo", data=form) as r:
            print("aiohttp multipart", r.status, len(await r.read()))
        async with session.get(URL + "/weather", params={"city": "Rome"}) as r:
            r.raise_for_status()
            print("aiohttp json", (await r.json())["city"])

asyncio.run(main())
# stderr: in replay no transport runs at all (the call is served at the client)
print("litellm transport", sorted(set(transports)), file=sys.stderr)
"""


def test_litellm_openai_aiohttp_client_and_aiohttp_replay_identically(tmp_path: Path, llm_server):
    recorded, _ = replays_offline(tmp_path, llm_server, AGENT, env=LITELLM_ENV)
    assert "litellm transport ['LiteLLMAiohttpTransport']" in recorded.stderr
    assert "litellm async stream Hello! You said: Stream about Oslo" in recorded.stdout
    document = json.loads((tmp_path / ".agenttrace" / "last.json").read_text())
    calls = Counter(
        (e["client"], e["request"]["url"].removeprefix(llm_server.url).split("?")[0])
        for e in document["events"]
        if e["kind"] == "http"
    )
    # each call once, at the outermost client (never again as an aiohttp call underneath)
    assert calls == Counter(
        {
            ("httpx", "/v1/chat/completions"): 2,  # litellm sync + async over its aiohttp transport
            ("httpx2", "/v1/chat/completions"): 1,  # openai's DefaultAioHttpClient
            ("aiohttp", "/sse"): 1,
            ("aiohttp", "/echo"): 2,
            ("aiohttp", "/weather"): 1,
        }
    )
    streamed = [
        e for e in document["events"] if e["kind"] == "http" and e["response"].get("chunks")
    ]
    assert len(streamed) >= 3  # litellm async, openai and aiohttp SSE kept their chunks
