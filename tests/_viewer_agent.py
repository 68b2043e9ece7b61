"""The agent the viewer tests record: a step filter, a plain and a streamed answer, an XSS payload.

It asks the model (the local LLM server, which echoes) a question that is an XSS payload, so the
recorded answer holds ``<script>`` and an ``onerror`` handler; looks up the weather with a
password the step filters out (a ``[REDACTED]`` marker in the trace); and streams its answer.
It prints, as JSON, what the SDK gave it, so a replay can be checked for identical output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import run_python

PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'

AGENT = r"""
import json, os
import openai, requests
import agenttrace

agenttrace.init()
URL = os.environ["URL"]
CITY = os.environ.get("CITY", "Paris")
PAYLOAD = os.environ["PAYLOAD"]

@agenttrace.run(name="viewer_agent")
def main():
    oai = openai.OpenAI(base_url=URL + "/v1", api_key="sk-test-not-real", max_retries=0)
    with agenttrace.step("Plan", type="thought", input={"city": CITY}):
        agenttrace.set_result({"plan": ["look up", "echo", "answer"]})
    with agenttrace.step("Look up", type="tool_call", filter=["password"]):
        weather = requests.get(URL + "/weather", params={"city": CITY, "password": "hunter2"},
                               timeout=10).json()
    with agenttrace.step("Echo", type="llm"):
        echo = oai.chat.completions.create(model="gpt-4o-mini",
                                           messages=[{"role": "user", "content": PAYLOAD}])
    with agenttrace.step("Answer", type="llm"):
        stream = oai.chat.completions.create(
            model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Weather: " + json.dumps(weather)}])
        answer = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    print(json.dumps({"echo": echo.choices[0].message.content, "answer": answer}))
    if os.environ.get("FAIL"):
        raise RuntimeError("the agent gave up <b>loudly</b>")

main()
"""


@dataclass
class Run:
    """One recorded run of AGENT."""

    trace_id: str
    stdout: str
    output: dict[str, Any]
    workdir: Path


def record(workdir: Path, url: str, **env: str) -> Run:
    """Run AGENT in ``workdir`` against the LLM server at ``url``; with FAIL set it raises at the
    end. The caller fills in the trace id (from the local store or the backend)."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = run_python(
        AGENT,
        env={"URL": url, "PAYLOAD": PAYLOAD, "AGENTTRACE_SPOOL_DIR": str(workdir / "spool"), **env},
        cwd=workdir,
        timeout=120,
    )
    if not env.get("FAIL"):
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1, result.stderr
    output = json.loads(result.stdout.splitlines()[0])
    return Run("", result.stdout, output, workdir)
