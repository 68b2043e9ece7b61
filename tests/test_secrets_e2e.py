"""Secrets never leave the process, and replay still works: real agents, real servers, raw bytes.

A real agent (httpx2, the openai SDK, requests with the stock OpenTelemetry requests
instrumentation) plants secrets in headers, query strings, JSON bodies, a gzip upload, a gzip
response, a stream that splits a secret across two chunks, exception messages and step inputs and
results. Every file the local store writes is then searched, as raw bytes, for every secret.
The same run is replayed under governance with *fresh* secrets (a new token, a new user id):
every call still matches its recording, and where the recording holds the marker the agent now
sees the marker.
"""

from __future__ import annotations

import gzip
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, run_python

MARKER = "[REDACTED]"
# Served by the tool server (the same in record and replay), so only the recording can hold them.
GZIP_SECRET = "gz-access-7d41c0ffee5eed"
SPLIT_HEAD, SPLIT_TAIL = "sk-ant-api03-SPLITHEAD", "SPLITTAIL0123456789"
SPLIT_SECRET = SPLIT_HEAD + SPLIT_TAIL
MASK = r"ACME-\d{6}"


class ToolServer:
    """``/split-sse``: a secret and a masked string each split across two SSE chunks (sent 50 ms
    apart, so they are recorded as separate chunks); ``/gzip-secret``: a gzip JSON answer with
    an access token in it."""

    def __init__(self) -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests += 1
                if self.path.startswith("/split-sse"):
                    self._split_sse()
                elif self.path.startswith("/gzip-secret"):
                    body = gzip.compress(
                        json.dumps({"access_token": GZIP_SECRET, "city": "Paris"}).encode(), mtime=0
                    )
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def _split_sse(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                parts = [
                    f'data: {{"note": "key {SPLIT_HEAD}',
                    f"{SPLIT_TAIL} for order ACME-12",
                    '3456"}\n\n',
                    "data: [DONE]\n\n",
                ]
                for part in parts:
                    self.wfile.write(part.encode())
                    self.wfile.flush()
                    time.sleep(0.05)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def tool_server() -> Iterator[ToolServer]:
    server = ToolServer()
    try:
        yield server
    finally:
        server.stop()


AGENT = """
import gzip, json, os
import httpx2, openai, requests
from opentelemetry.instrumentation.requests import RequestsInstrumentor

RequestsInstrumentor().instrument()  # its spans carry the raw url.full, query string and all
import agenttrace

agenttrace.init()
URL, TOOLS, DEAD = os.environ["URL"], os.environ["TOOLS"], os.environ["DEAD"]
TOKEN, OPENAI_KEY, PASSWORD = os.environ["TOKEN"], os.environ["OPENAI_KEY"], os.environ["PASSWORD"]
USER_ID, AWS_KEY = os.environ["USER_ID"], os.environ["AWS_KEY"]
GZIP_SECRET, SPLIT_SECRET = os.environ["GZIP_SECRET"], os.environ["SPLIT_SECRET"]
MARKER = "[REDACTED]"


def seen(value, secret):
    # What the agent got back: the secret (recording), the marker (replay) or something else.
    text = json.dumps(value) if not isinstance(value, str) else value
    return "secret" if secret in text else "marker" if MARKER in text else "other:" + text[:40]


@agenttrace.run(name="secret_agent")
def main():
    with agenttrace.step("Lookup", type="tool_call", filter=["user_id"],
                         input={"query": "weather", "password": PASSWORD, "hint": "use " + OPENAI_KEY}):
        echo = httpx2.post(
            URL + "/echo",
            params={"access_token": TOKEN, "city": "Paris", "ref": "ACME-000001"},
            headers={"Authorization": "Bearer " + TOKEN, "X-Api-Key": TOKEN, "Cookie": "sid=" + TOKEN},
            json={"api_key": TOKEN, "user_id": USER_ID, "note": "aws " + AWS_KEY,
                  "order": "ACME-000002", "city": "Paris"},
        ).json()
        print("echo city", echo["json"]["city"], echo["query"]["city"])
        print("echo token", seen(echo["json"]["api_key"], TOKEN), seen(echo["query"]["access_token"], TOKEN),
              seen(echo["headers"]["authorization"], TOKEN), seen(echo["json"]["user_id"], USER_ID))
        agenttrace.set_result({"session_id": TOKEN, "status": "ok"})

    with agenttrace.step("Compressed"):
        got = httpx2.get(TOOLS + "/gzip-secret").json()
        print("gzip", got["city"], seen(got["access_token"], GZIP_SECRET))
        upload = gzip.compress(json.dumps({"password": PASSWORD, "city": "Oslo"}).encode())
        r = httpx2.post(URL + "/echo", content=upload,
                        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        print("gzip upload", r.status_code)

    with agenttrace.step("Stream"):
        with httpx2.stream("GET", TOOLS + "/split-sse") as r:
            parts = list(r.iter_text())
        text = "".join(parts)
        print("stream", text.count("data:"), seen(text, SPLIT_SECRET), "ACME-123456" in text)

    with agenttrace.step("Answer", type="llm"):
        client = openai.OpenAI(base_url=URL + "/v1", api_key=OPENAI_KEY)
        question = "My password is swordfish. What is the weather in Paris?"
        pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": question}], stream=True) if c.choices]
        print("answer", "".join(pieces))

    with agenttrace.step("Unreachable"):
        try:
            requests.get(DEAD + "/v1/things", params={"api_key": TOKEN}, timeout=5)
        except requests.RequestException as exc:
            print("unreachable", type(exc).__name__, seen(str(exc), TOKEN))

    try:
        with agenttrace.step("Login"):
            raise ValueError(f"login failed: password={PASSWORD} key {OPENAI_KEY} order ACME-000003")
    except ValueError:
        print("login failed")


main()
"""


def fresh_secrets() -> dict[str, str]:
    """New values each run: replay must match without them being equal to the recording's."""
    return {
        "TOKEN": "tok-" + secrets.token_hex(12),
        "OPENAI_KEY": "sk-proj-" + secrets.token_hex(16),
        "PASSWORD": "pw-" + secrets.token_hex(6),
        "USER_ID": "user-" + secrets.token_hex(5),
        "AWS_KEY": "AKIA" + secrets.token_hex(8).upper(),
    }


def base_env(llm_server: Any, tool_server: ToolServer, dead: str) -> dict[str, str]:
    return {
        "URL": llm_server.url,
        "TOOLS": tool_server.url,
        "DEAD": dead,
        "GZIP_SECRET": GZIP_SECRET,
        "SPLIT_SECRET": SPLIT_SECRET,
        "AGENTTRACE_MASK": MASK,
    }


def files_under(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def assert_absent(blobs: dict[Any, bytes], needles: list[str]) -> None:
    assert blobs, "nothing was written"
    for where, data in blobs.items():
        for needle in needles:
            assert needle.encode() not in data, f"{needle!r} leaked into {where}"


def leaked_strings(planted: dict[str, str]) -> list[str]:
    return [*planted.values(), GZIP_SECRET, SPLIT_HEAD, SPLIT_TAIL, "ACME-"]


def test_no_secret_reaches_the_local_trace_and_replay_matches_with_fresh_secrets(
    tmp_path, llm_server, tool_server
):
    env = base_env(llm_server, tool_server, f"http://127.0.0.1:{free_port()}")
    planted = fresh_secrets()
    recorded = run_python(AGENT, env={**env, **planted}, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    lines = recorded.stdout.splitlines()
    assert "echo token secret secret secret secret" in lines  # the agent saw the real values
    assert "gzip Paris secret" in lines and "stream 2 secret True" in lines
    assert "unreachable ConnectionError secret" in lines  # the live exception names the URL

    store = tmp_path / ".agenttrace"
    written = files_under(store)
    assert_absent(written, leaked_strings(planted))
    document = json.loads((store / "last.json").read_text())
    text = json.dumps(document)
    assert MARKER in text
    # ordinary LLM content is not scrubbed
    assert "My password is swordfish" in text
    # other instrumentations' spans are scrubbed too (opentelemetry-instrumentation-requests)
    urls = [
        s["attributes"].get("url.full") or s["attributes"].get("http.url")
        for s in document["spans"]
    ]
    assert any(u and "api_key=" + MARKER in u for u in urls), urls
    # the split secret's chunks keep their count and timing
    stream = next(
        e for e in document["events"] if e.get("request", {}).get("url", "").endswith("/split-sse")
    )
    chunks = stream["response"]["chunks"]
    assert len(chunks) == 4 and [c["at_ms"] for c in chunks] == sorted(c["at_ms"] for c in chunks)
    assert {"response.chunks[0]", "response.chunks[1]"} <= set(stream["redacted"])

    served = (llm_server.request_count, tool_server.requests)
    again = fresh_secrets()  # a new token, key, password and user id for the replay
    replayed = run_python(
        AGENT,
        env={
            **env,
            **again,
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(store / "last.json"),
        },
        cwd=tmp_path,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert (llm_server.request_count, tool_server.requests) == served  # nothing went live
    expected = [
        line.replace(
            "echo token secret secret secret secret", "echo token marker marker marker marker"
        )
        .replace("gzip Paris secret", "gzip Paris marker")
        .replace("stream 2 secret True", "stream 2 marker False")
        .replace("unreachable ConnectionError secret", "unreachable ConnectionError marker")
        for line in lines
    ]
    assert replayed.stdout.splitlines() == expected
    assert_absent(files_under(store / "replays"), leaked_strings(again))


def test_no_secret_reaches_a_collector(tmp_path, llm_server, tool_server):
    from _otlp_receiver import OTLPReceiver

    env = base_env(llm_server, tool_server, f"http://127.0.0.1:{free_port()}")
    planted = fresh_secrets()
    with OTLPReceiver() as receiver:
        result = run_python(
            AGENT, env={**env, **planted, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        spans = receiver.wait_for(lambda s: any(x["name"] == "secret_agent" for x in s))
    assert any(s["name"] == "secret_agent" for s in spans), result.stderr
    assert_absent({"collector": json.dumps(spans).encode()}, leaked_strings(planted))


def test_no_secret_reaches_the_server_database(tmp_path, llm_server, tool_server):
    import signal
    import subprocess
    import sys

    import requests
    from conftest import clean_env

    key = "at_test_" + secrets.token_hex(8)
    port = free_port()
    db = tmp_path / "server" / "agenttrace.db"
    db.parent.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "agenttrace.cli", "serve", "--port", str(port), "--db", str(db),
         "--api-key", key],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        env = base_env(llm_server, tool_server, f"http://127.0.0.1:{free_port()}")
        planted = fresh_secrets()
        agent_dir = tmp_path / "agent"
        agent_dir.mkdir()
        result = run_python(
            AGENT,
            env={**env, **planted, "AGENTTRACE_API_KEY": key, "AGENTTRACE_API_URL": url},
            cwd=agent_dir,
        )
        assert result.returncode == 0, result.stderr
        listing = requests.get(
            url + "/api/v1/traces", headers={"Authorization": f"Bearer {key}"}, timeout=10
        ).json()
        assert json.dumps(listing).count("secret_agent") >= 1, listing
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
    assert_absent(files_under(db.parent), leaked_strings(planted))


KEEP_AGENT = """
import os, httpx2, agenttrace
agenttrace.init()
with agenttrace.step("Session", input={"session_id": "sess-visible-1", "password": os.environ["PASSWORD"]}):
    httpx2.post(os.environ["URL"] + "/echo", json={"session_id": "sess-visible-2", "token": os.environ["PASSWORD"]})
"""


def test_scrub_keep_records_one_key_in_clear_and_says_so(tmp_path, llm_server):
    password = "pw-" + secrets.token_hex(6)
    result = run_python(
        KEEP_AGENT,
        env={"URL": llm_server.url, "PASSWORD": password, "AGENTTRACE_SCRUB_KEEP": "session_id"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "default scrubbing is OFF for session_id" in result.stderr
    written = files_under(tmp_path / ".agenttrace")
    assert_absent(written, [password])
    text = b"".join(written.values())
    assert b"sess-visible-1" in text and b"sess-visible-2" in text


FAILING_AGENT = """
import os, agenttrace
agenttrace.init()

@agenttrace.run(name="failing")
def main():
    with agenttrace.step("Connect", input={"dsn": "postgres://app:" + os.environ["PASSWORD"] + "@db/x"}):
        raise ConnectionError("auth rejected for api_key=" + os.environ["TOKEN"])

main()
"""


def test_a_failed_run_keeps_its_error_but_not_the_secret_in_it(tmp_path):
    planted = fresh_secrets()
    result = run_python(FAILING_AGENT, env=planted, cwd=tmp_path)
    assert result.returncode != 0 and planted["TOKEN"] in result.stderr  # the agent's own output
    failure = tmp_path / ".agenttrace" / "last-failure.json"
    document = json.loads(failure.read_text())
    assert document["run"]["error"] == f"ConnectionError: auth rejected for api_key={MARKER}"
    assert_absent(files_under(tmp_path / ".agenttrace"), [planted["TOKEN"], planted["PASSWORD"]])
