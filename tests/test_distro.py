"""`opentelemetry-instrument python agent.py`: AgentTrace records and replays an agent whose code
never imports it, alone or beside other distros and the stock OpenTelemetry instrumentors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from _otlp_receiver import OTLPReceiver
from conftest import clean_env

OTEL_INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")

# Unmodified: no agenttrace anywhere. requests for the tool, the real openai SDK (httpx2) for
# the model, entropy the replay must reproduce.
AGENT = """
import json, os, random, uuid
import openai, requests

URL = os.environ["URL"]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

print("run", uuid.uuid4(), random.random())
client = openai.OpenAI(base_url=URL + "/v1", api_key="sk-test-not-real")
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
first = client.chat.completions.create(model="m", messages=messages, tools=TOOLS)
call = first.choices[0].message.tool_calls[0]
print("tool call", call.function.name, call.function.arguments)
weather = requests.get(URL + "/weather", params={"city": json.loads(call.function.arguments)["city"]}).json()
print("weather", weather)
messages += [first.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": json.dumps(weather)}]
pieces = [c.choices[0].delta.content for c in client.chat.completions.create(
    model="m", messages=messages, stream=True) if c.choices and c.choices[0].delta.content]
print("answer", "".join(pieces))
"""


def instrumented(
    script: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    (cwd / "agent.py").write_text(textwrap.dedent(script), encoding="utf-8")
    return subprocess.run(
        [str(OTEL_INSTRUMENT), sys.executable, "agent.py"],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def replay_env(tmp_path: Path, url: str, level: str = "governance") -> dict[str, str]:
    return {
        "URL": url,
        "AGENTTRACE_MODE": "replay",
        "AGENTTRACE_GOVERNANCE_LEVEL": level,
        "AGENTTRACE_REPLAY_EVENTS_FILE": str(tmp_path / ".agenttrace" / "last.json"),
    }


def http_events(tmp_path: Path, name: str = "last.json") -> list[dict]:
    doc = json.loads((tmp_path / ".agenttrace" / name).read_text(encoding="utf-8"))
    return [e for e in doc["events"] if e["kind"] == "http"]


def test_records_an_unmodified_agent_and_replays_it_offline_under_governance(tmp_path, llm_server):
    recorded = instrumented(AGENT, tmp_path, {"URL": llm_server.url})
    assert recorded.returncode == 0, recorded.stderr
    events = http_events(tmp_path)
    assert [(e["client"], e["request"]["method"], e["request"]["url"]) for e in events] == [
        ("httpx2", "POST", llm_server.url + "/v1/chat/completions"),
        ("urllib3", "GET", llm_server.url + "/weather?city=Paris"),
        ("httpx2", "POST", llm_server.url + "/v1/chat/completions"),
    ]
    served = llm_server.request_count
    llm_server.stop()  # offline from here on

    replayed = instrumented(AGENT, tmp_path, replay_env(tmp_path, llm_server.url))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert "violation" not in replayed.stderr.lower()
    assert llm_server.request_count == served
    assert (tmp_path / ".agenttrace" / "replays" / "last.json").exists()


def test_stock_instrumentors_installed_still_capture_each_call_once(tmp_path, llm_server):
    pytest.importorskip("opentelemetry.instrumentation.httpx")
    script = """
    import asyncio, os
    import httpx, httpx2, openai, requests
    URL = os.environ["URL"]
    client = openai.OpenAI(base_url=URL + "/v1", api_key="sk-test-not-real")
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    print("openai", r.choices[0].message.content)
    print("httpx", httpx.get(URL + "/weather?city=Oslo").json()["city"])
    async def fetch():
        async with httpx2.AsyncClient() as http:
            return (await http.get(URL + "/weather?city=Lima")).json()["city"]
    print("httpx2 async", asyncio.run(fetch()))
    print("requests", requests.get(URL + "/weather?city=Rome").json()["city"])
    """
    with OTLPReceiver() as receiver:
        result = instrumented(
            script, tmp_path, {"URL": llm_server.url, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        )
        spans = receiver.spans
    assert result.returncode == 0, result.stderr
    # the stock instrumentors really were active: their spans reached the collector
    scopes = {s["scope"] for s in spans}
    assert "opentelemetry.instrumentation.httpx" in scopes, scopes
    assert "opentelemetry.instrumentation.requests" in scopes, scopes
    urls = Counter(e["request"]["url"].removeprefix(llm_server.url) for e in http_events(tmp_path))
    assert urls == Counter(
        {
            "/v1/chat/completions": 1,
            "/weather?city=Oslo": 1,
            "/weather?city=Lima": 1,
            "/weather?city=Rome": 1,
        }
    )


def test_stock_httpx_instrumentor_with_init_captures_once(tmp_path, llm_server):
    pytest.importorskip("opentelemetry.instrumentation.httpx")
    from conftest import run_python

    script = """
    import os, httpx, httpx2
    from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
    HTTPXClientInstrumentor().instrument()      # before init: it wraps first, we wrap it
    import agenttrace
    agenttrace.init()
    HTTPX2ClientInstrumentor().instrument()     # after init: it wraps us
    URL = os.environ["URL"]
    print(httpx.get(URL + "/weather?city=Oslo").json()["city"])
    print(httpx2.get(URL + "/weather?city=Lima").json()["city"])
    """
    result = run_python(script, env={"URL": llm_server.url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(e["client"] for e in http_events(tmp_path)) == ["httpx", "httpx2"]


def test_spans_reach_the_collector_once_with_the_sdk_exporter_also_configured(tmp_path, llm_server):
    script = """
    import os, httpx2
    print(httpx2.get(os.environ["URL"] + "/weather?city=Oslo").json()["city"])
    """
    for traces_exporter in (None, "otlp"):
        env = {"URL": llm_server.url}
        if traces_exporter:
            env["OTEL_TRACES_EXPORTER"] = traces_exporter  # the SDK configurator adds one too
            env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"  # its default is grpc
        with OTLPReceiver() as receiver:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
            result = instrumented(script, tmp_path, env)
            spans = receiver.spans
        assert result.returncode == 0, result.stderr
        assert all(n == 1 for n in Counter(s["span_id"] for s in spans).values()), spans
        ours = [s for s in spans if s["scope"] == "agenttrace"]
        assert sorted(s["name"] for s in ours) == ["GET", "agent"], traces_exporter
        resource = spans[0]["resource"]
        assert resource["service.name"] == "agent"  # the script name, as with init()
        assert resource["telemetry.auto.version"]


def test_init_in_agent_code_keeps_the_launchers_configuration(tmp_path, llm_server):
    script = """
    import os, httpx2, agenttrace
    settings = agenttrace.init(local_dir="elsewhere", mode="record")
    print(settings.local_dir, settings.mode)
    print(httpx2.get(os.environ["URL"] + "/weather?city=Oslo").json()["city"])
    """
    recorded = instrumented(script, tmp_path, {"URL": llm_server.url})
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout.splitlines() == [".agenttrace record", "Oslo"]
    assert "started by opentelemetry-instrument" in recorded.stderr
    assert "local_dir" in recorded.stderr
    assert not (tmp_path / "elsewhere").exists()
    assert len(http_events(tmp_path)) == 1

    # under a governed replay, init(mode="record") in agent code cannot go live
    llm_server.stop()
    replayed = instrumented(script, tmp_path, replay_env(tmp_path, llm_server.url))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.splitlines() == [".agenttrace replay", "Oslo"]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"AGENTTRACE_MODE": "replay"}, "needs events to replay"),
        (
            {"AGENTTRACE_MODE": "replay", "AGENTTRACE_REPLAY_EVENTS_FILE": "missing.json"},
            "missing.json",
        ),
    ],
)
def test_a_replay_that_cannot_start_never_runs_the_agent_live(tmp_path, env, message):
    result = instrumented("print('agent ran')", tmp_path, env, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "cannot replay" in result.stderr and message in result.stderr


def test_a_bad_setting_in_record_mode_only_skips_recording(tmp_path):
    result = instrumented("print('agent ran')", tmp_path, {"AGENTTRACE_API_KEY": "not-a-key"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "agent ran\n"
    assert "not recording this run" in result.stderr
    assert "not-a-key" not in result.stderr  # the key itself is never echoed


def test_disabled_by_the_standard_variable(tmp_path, llm_server):
    script = """
    import os, httpx2
    print(httpx2.get(os.environ["URL"] + "/weather?city=Oslo").json()["city"])
    """
    env = {"URL": llm_server.url, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "agenttrace"}
    result = instrumented(script, tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Oslo\n"
    assert not (tmp_path / ".agenttrace").exists()


# -- beside another distro ----------------------------------------------------------------------

FOREIGN = '''
"""A stand-in for another vendor's distro and configurator (e.g. opentelemetry-distro)."""
import os
from opentelemetry import trace
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk._configuration import _BaseConfigurator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class Distro(BaseDistro):
    def _configure(self, **kwargs):
        pass


class LinesExporter(SpanExporter):
    def export(self, spans):
        with open(os.environ["FOREIGN_SPANS"], "a") as fh:
            for span in spans:
                fh.write(span.name + "\\n")
        return SpanExportResult.SUCCESS


class Broken(BaseInstrumentor):
    """An instrumentor that crashes when FOREIGN_BROKEN is set."""

    def instrumentation_dependencies(self):
        return ()

    def _instrument(self, **kwargs):
        if os.environ.get("FOREIGN_BROKEN"):
            raise RuntimeError("broken instrumentor")

    def _uninstrument(self, **kwargs):
        pass


class Configurator(_BaseConfigurator):
    def _configure(self, **kwargs):
        provider = TracerProvider(resource=Resource.create({"vendor": "foreign"}))
        provider.add_span_processor(SimpleSpanProcessor(LinesExporter()))
        trace.set_tracer_provider(provider)
'''


@pytest.fixture
def foreign_distro(tmp_path):
    site = tmp_path / "site"
    info = site / "foreign_distro-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "foreign_distro.py").write_text(FOREIGN, encoding="utf-8")
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: foreign-distro\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[opentelemetry_distro]\nforeign = foreign_distro:Distro\n\n"
        "[opentelemetry_configurator]\nforeign = foreign_distro:Configurator\n\n"
        "[opentelemetry_instrumentor]\nbroken = foreign_distro:Broken\n",
        encoding="utf-8",
    )
    work = tmp_path / "work"
    work.mkdir()
    return work, {"PYTHONPATH": str(site), "FOREIGN_SPANS": str(tmp_path / "foreign.txt")}


SMALL_AGENT = """
import os, httpx2
print(httpx2.get(os.environ["URL"] + "/weather?city=Oslo").json()["city"])
"""


def test_another_distro_selected_agenttrace_still_records_and_joins_its_provider(
    foreign_distro, llm_server
):
    work, env = foreign_distro
    env.update(
        {
            "URL": llm_server.url,
            "OTEL_PYTHON_DISTRO": "foreign",
            "OTEL_PYTHON_CONFIGURATOR": "foreign",
        }
    )
    result = instrumented(SMALL_AGENT, work, env)
    assert result.returncode == 0, result.stderr
    assert "Overriding of current TracerProvider" not in result.stderr
    assert len(http_events(work)) == 1
    # our spans went through the foreign provider's exporter too
    foreign = Path(env["FOREIGN_SPANS"]).read_text().split()
    assert "agent" in foreign and "GET" in foreign


def test_otel_python_distro_agenttrace_picks_our_configurator(foreign_distro, llm_server):
    work, env = foreign_distro
    env.update({"URL": llm_server.url, "OTEL_PYTHON_DISTRO": "agenttrace"})
    result = instrumented(SMALL_AGENT, work, env)
    assert result.returncode == 0, result.stderr
    assert len(http_events(work)) == 1
    assert not Path(env["FOREIGN_SPANS"]).exists()  # the foreign configurator never ran


def test_a_replay_whose_auto_instrumentation_broke_refuses_the_network(foreign_distro, llm_server):
    work, env = foreign_distro
    env["URL"] = llm_server.url
    assert instrumented(SMALL_AGENT, work, env).returncode == 0
    served = llm_server.request_count
    # another distro, and an instrumentor that crashes: opentelemetry-instrument stops loading
    # before AgentTrace starts, and the agent would run live
    env.update(replay_env(work, llm_server.url))
    env.update({"OTEL_PYTHON_DISTRO": "foreign", "FOREIGN_BROKEN": "1"})
    result = instrumented(SMALL_AGENT, work, env)
    assert result.returncode != 0
    assert "SandboxEscape" in result.stderr and "before AgentTrace started" in result.stderr
    assert llm_server.request_count == served
    # with our distro the broken instrumentor is skipped and the replay runs
    env["OTEL_PYTHON_DISTRO"] = "agenttrace"
    result = instrumented(SMALL_AGENT, work, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Oslo\n"
    assert "instrumentor broken failed; skipped" in result.stderr
    assert llm_server.request_count == served


# -- registration ------------------------------------------------------------------------------


def test_entry_points_are_registered():
    from importlib.metadata import distribution, entry_points

    def names(group: str) -> set[str]:
        return {ep.name for ep in entry_points(group=group) if ep.value.startswith("agenttrace")}

    assert names("opentelemetry_distro") == {"agenttrace"}
    assert names("opentelemetry_configurator") == {"agenttrace"}
    assert names("opentelemetry_pre_instrument") == {"agenttrace"}
    assert names("opentelemetry_post_instrument") == {"agenttrace"}
    assert {
        "agenttrace_httpx",
        "agenttrace_httpx2",
        "agenttrace_requests",
        "agenttrace_urllib3",
        "agenttrace_http_client",
        "agenttrace_aiohttp",
        "agenttrace_websockets",
        "agenttrace_mcp",
    } <= names("opentelemetry_instrumentor")
    for ep in entry_points(group="opentelemetry_instrumentor"):
        if ep.value.startswith("agenttrace"):
            ep.load()

    # auto-instrumentation checks the distribution's `instruments` extras: agenttrace declares
    # none, so no missing library can disable all of our instrumentors at once
    from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts

    assert get_dist_dependency_conflicts(distribution("agenttrace")) is None


def test_each_instrumentor_depends_on_its_own_library_only():
    from agenttrace.instrumentors import otel

    deps = {
        cls.library: list(cls().instrumentation_dependencies())
        for cls in (
            otel.HttpxInstrumentor,
            otel.Httpx2Instrumentor,
            otel.RequestsInstrumentor,
            otel.Urllib3Instrumentor,
            otel.HttpClientInstrumentor,
            otel.AiohttpInstrumentor,
            otel.WebsocketsInstrumentor,
            otel.McpInstrumentor,
        )
    }
    for library, requirements in deps.items():
        assert all(r.split()[0] == library for r in requirements), (library, requirements)
    assert deps["http.client"] == []
