"""collector-config.yaml: no collector binary here, so check what otelcol would check first
(every pipeline names defined components of known types) and what the file promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

CONFIG = Path(__file__).resolve().parent.parent / "collector-config.yaml"

# Component types of the otelcol-contrib distribution that a config like ours may use.
KNOWN = {
    "receivers": {"otlp", "prometheus", "hostmetrics", "filelog"},
    "processors": {
        "memory_limiter",
        "batch",
        "redaction",
        "attributes",
        "transform",
        "resource",
        "resourcedetection",
        "filter",
    },
    "exporters": {"otlphttp", "otlp", "file", "debug"},
    "extensions": {"health_check", "file_storage", "pprof", "zpages"},
}
SIGNALS = {"traces", "metrics", "logs"}


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def test_components_are_known_types(config):
    for section, known in KNOWN.items():
        for component_id in config.get(section) or {}:
            assert _type(component_id) in known, f"{section}: unknown component {component_id!r}"


def test_pipelines_reference_defined_components(config):
    service = config["service"]
    pipelines = service["pipelines"]
    assert "traces" in pipelines
    for name, pipeline in pipelines.items():
        assert _type(name) in SIGNALS, name
        assert pipeline.get("receivers") and pipeline.get("exporters"), name
        for section in ("receivers", "processors", "exporters"):
            for component_id in pipeline.get(section) or []:
                assert component_id in (config.get(section) or {}), (
                    f"pipeline {name} uses {section[:-1]} {component_id!r}, not defined"
                )
    for extension in service.get("extensions") or []:
        assert extension in (config.get("extensions") or {}), extension


def test_processor_order(config):
    processors = config["service"]["pipelines"]["traces"]["processors"]
    assert processors[0] == "memory_limiter"  # refuse data before anything else holds it
    assert processors[-1] == "batch"
    assert "redaction" in processors and "attributes/credentials" in processors


def test_receives_otlp_on_standard_ports(config):
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")


def test_exports_to_agenttrace_with_bearer_key(config):
    used = config["service"]["pipelines"]["traces"]["exporters"]
    exporter_id = next(e for e in used if _type(e) == "otlphttp")
    exporter = config["exporters"][exporter_id]
    assert exporter["endpoint"] == "${env:AGENTTRACE_API_URL}"
    assert exporter["headers"]["Authorization"] == "Bearer ${env:AGENTTRACE_API_KEY}"
    assert exporter["compression"] == "gzip"


def test_file_exporter_is_defined_but_optional(config):
    files = [e for e in config["exporters"] if _type(e) == "file"]
    assert files and files[0] not in config["service"]["pipelines"]["traces"]["exporters"]
    assert config["exporters"][files[0]]["path"]


def test_env_references_are_well_formed():
    text = CONFIG.read_text(encoding="utf-8")
    references = re.findall(r"\$\{[^}]*\}", text)
    assert references
    for ref in references:
        assert re.fullmatch(r"\$\{env:[A-Z_][A-Z0-9_]*\}", ref), ref


def _masked(config: dict, value: str) -> bool:
    patterns = config["processors"]["redaction"]["blocked_values"]
    return any(re.search(p, value) for p in patterns)


@pytest.mark.parametrize(
    "secret",
    [
        "Bearer at_live_0123456789abcdef",
        "at_test_abcdefgh12345678",
        "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a" * 36,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
)
def test_redaction_masks_credentials(config, secret):
    assert _masked(config, f"url=https://x/?q=1 auth {secret} tail")


@pytest.mark.parametrize(
    "value",
    [
        "What is the weather in Paris?",
        "gpt-4o-mini",
        "gen_ai.usage.input_tokens",
        "risk-assessment-of-the-quarterly-plan",
        "format_live_previews_enabled",
    ],
)
def test_redaction_leaves_ordinary_values(config, value):
    assert not _masked(config, value)


def test_credential_headers_are_deleted(config):
    (action,) = config["processors"]["attributes/credentials"]["actions"]
    assert action["action"] == "delete"
    pattern = re.compile(action["pattern"])
    for key in ("http.request.header.authorization", "http.request.header.x-api-key"):
        assert pattern.search(key), key
    assert not pattern.search("http.request.header.content-type")
