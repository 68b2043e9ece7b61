"""A body that scrubbing changed is served with framing that matches it, for every client.

The recorded headers keep the server's Content-Length; the served response announces the length
of the bytes it serves, so no client reads too little, waits for more, or raises IncompleteRead.
"""

from __future__ import annotations

import gzip
import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import requests
import urllib3

import agenttrace
from agenttrace import _config, _session

MARKER = "[REDACTED]"


def _requests(url: str) -> dict[str, Any]:
    return requests.get(url).json()


def _urllib(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url) as response:
        data = response.read()
    if response.headers.get("Content-Encoding") == "gzip":  # urllib does not decode
        data = gzip.decompress(data)
    return json.loads(data)


def _urllib3(url: str) -> dict[str, Any]:
    return urllib3.request("GET", url).json()


def _httpx(url: str) -> dict[str, Any]:
    return httpx.get(url).json()


def _httpx2(url: str) -> dict[str, Any]:
    return httpx2.get(url).json()


CLIENTS: dict[str, Callable[[str], dict[str, Any]]] = {
    "requests": _requests,
    "urllib": _urllib,
    "urllib3": _urllib3,
    "httpx": _httpx,
    "httpx2": _httpx2,
}

# How the recorded body came to differ from what the server sent, and which field it hit.
SCRUBBING: dict[str, tuple[dict[str, Any], list[str] | None, str]] = {
    "default rules": ({}, None, "access_token"),
    "step filter": ({}, ["user"], "user"),
    "mask": ({"mask": [r"ACME-\d{6}"]}, None, "order"),
}


@pytest.fixture(autouse=True)
def no_session_left() -> Iterator[None]:
    agenttrace.shutdown()
    yield
    left = _session.current()
    if left is not None:  # a failed test's own session
        left.stop()


def _session_for(directory: Path, **settings: Any) -> _session.Session:
    resolved = _config.resolve({"local_dir": str(directory), **settings})
    return _session.Session(resolved, owns_exit=False).start()


def _fetch(client: str, url: str, step_filter: list[str] | None) -> dict[str, Any]:
    with agenttrace.step("Login", filter=step_filter):
        return CLIENTS[client](url)


@pytest.mark.parametrize("gzipped", [False, True], ids=["identity", "gzip"])
@pytest.mark.parametrize("scrubbing", list(SCRUBBING))
@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_scrubbed_body_replays_with_matching_framing(
    tmp_path, llm_server, client, scrubbing, gzipped
):
    settings, step_filter, field = SCRUBBING[scrubbing]
    url = llm_server.url + ("/token?gzip=1" if gzipped else "/token")
    session = _session_for(tmp_path, **settings)
    live = _fetch(client, url, step_filter)
    session.stop()
    assert live[field] != MARKER  # the agent saw the real value
    trace = tmp_path / "last.json"
    (event,) = [e for e in json.loads(trace.read_text())["events"] if e["kind"] == "http"]
    recorded = event["response"]
    assert MARKER in json.dumps(recorded["body"])  # the stored body was changed...
    served_length = {k.lower(): v for k, v in recorded["headers"]}["content-length"]
    assert int(served_length) > 0  # ...and the recorded headers still say the server's length

    served = llm_server.request_count
    for level in ("governance", "relaxed"):
        session = _session_for(
            tmp_path / level, mode="replay", governance_level=level, replay_events=str(trace)
        )
        replayed = _fetch(client, url, step_filter)
        violations = session.violations
        session.stop()
        assert violations == [], (level, violations)
        # default scrubbing always takes the token; the rule under test takes its field too
        assert replayed == {**live, "access_token": MARKER, field: MARKER}
    assert llm_server.request_count == served
