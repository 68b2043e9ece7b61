"""Configuration precedence (argument > environment > config file > default) and validation."""

from __future__ import annotations

import pytest

from agenttrace import ConfigError
from agenttrace._config import DEFAULT_API_URL, resolve

ENV_VARS = [
    "AGENTTRACE_API_KEY",
    "AGENTTRACE_API_URL",
    "AGENTTRACE_MODE",
    "AGENTTRACE_GOVERNANCE_LEVEL",
    "AGENTTRACE_REPLAY_EVENTS_FILE",
    "AGENTTRACE_MASK",
    "AGENTTRACE_LOCAL_DIR",
    "AGENTTRACE_CONFIG_FILE",
    "OTEL_SERVICE_NAME",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_pyproject(path, body: str) -> None:
    (path / "pyproject.toml").write_text("[tool.agenttrace]\n" + body)


# (key, init value, env var, env value, file line, file value, default)
PRECEDENCE = [
    (
        "api_url",
        "http://arg.example",
        "AGENTTRACE_API_URL",
        "http://env.example",
        'api_url = "http://file.example"',
        "http://file.example",
        DEFAULT_API_URL,
    ),
    ("mode", "record", "AGENTTRACE_MODE", "replay", 'mode = "replay"', "replay", "record"),
    (
        "governance_level",
        "relaxed",
        "AGENTTRACE_GOVERNANCE_LEVEL",
        "governance",
        'governance_level = "governance"',
        "governance",
        "relaxed",
    ),
    (
        "local_dir",
        "arg-dir",
        "AGENTTRACE_LOCAL_DIR",
        "env-dir",
        'local_dir = "file-dir"',
        "file-dir",
        ".agenttrace",
    ),
    (
        "service_name",
        "arg-svc",
        "OTEL_SERVICE_NAME",
        "env-svc",
        'service_name = "file-svc"',
        "file-svc",
        None,
    ),
    ("mask", ["arg"], "AGENTTRACE_MASK", "env1,env2", 'mask = ["file"]', ("file",), ()),
]


def _expected(key, value):
    if key == "mask" and isinstance(value, list):
        return tuple(value)
    if key == "mask" and isinstance(value, str):
        return tuple(value.split(","))
    return value


@pytest.mark.parametrize(
    "key,arg,env,env_value,line,file_value,default", PRECEDENCE, ids=[p[0] for p in PRECEDENCE]
)
def test_precedence_for_every_key(
    monkeypatch, clean_env, key, arg, env, env_value, line, file_value, default
):
    # mode=replay is only valid with events to replay
    (clean_env / "events.json").write_text("[]")
    monkeypatch.setenv("AGENTTRACE_REPLAY_EVENTS_FILE", "events.json")

    settings = resolve({})
    if default is not None:
        assert getattr(settings, key) == default
    assert settings.sources[key] == "default"

    write_pyproject(clean_env, line + "\n")
    settings = resolve({})
    assert getattr(settings, key) == file_value
    assert "pyproject.toml" in settings.sources[key]

    monkeypatch.setenv(env, env_value)
    settings = resolve({})
    assert getattr(settings, key) == _expected(key, env_value)
    assert settings.sources[key] == f"environment {env}"

    settings = resolve({key: arg})
    assert getattr(settings, key) == _expected(key, arg)
    assert settings.sources[key] == "init() argument"


def test_api_key_from_argument_and_environment(monkeypatch):
    assert resolve({}).api_key is None
    monkeypatch.setenv("AGENTTRACE_API_KEY", "at_test_env")
    assert resolve({}).api_key == "at_test_env"
    assert resolve({"api_key": "at_live_arg"}).api_key == "at_live_arg"


def test_api_key_is_never_read_from_pyproject(clean_env):
    write_pyproject(clean_env, 'api_key = "at_live_committed"\n')
    with pytest.raises(
        ConfigError, match="secrets are not read from config files.*AGENTTRACE_API_KEY"
    ):
        resolve({})


def test_config_file_named_by_environment(monkeypatch, clean_env):
    (clean_env / "at.toml").write_text('mode = "record"\ngovernance_level = "governance"\n')
    monkeypatch.setenv("AGENTTRACE_CONFIG_FILE", str(clean_env / "at.toml"))
    settings = resolve({})
    assert settings.governance_level == "governance"
    assert settings.sources["governance_level"] == str(clean_env / "at.toml")


def test_missing_config_file_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AGENTTRACE_CONFIG_FILE", "nope.toml")
    with pytest.raises(ConfigError, match="AGENTTRACE_CONFIG_FILE='nope.toml': file not found"):
        resolve({})


def test_invalid_toml_names_the_file(clean_env):
    (clean_env / "pyproject.toml").write_text("[tool.agenttrace\nmode=")
    with pytest.raises(ConfigError, match="pyproject.toml.*not valid TOML"):
        resolve({})


@pytest.mark.parametrize(
    "overrides,env,message",
    [
        (
            {"api_key": "sk-123456"},
            {},
            r"api_key='sk-…' \(from init\(\) argument\) is not an AgentTrace key; keys start with at_live_ or at_test_",
        ),
        (
            {},
            {"AGENTTRACE_API_KEY": "secret-key"},
            r"api_key='sec…' \(from environment AGENTTRACE_API_KEY\)",
        ),
        (
            {"mode": "playback"},
            {},
            r"mode='playback' \(from init\(\) argument\) is not valid; choose one of: record, replay",
        ),
        (
            {},
            {"AGENTTRACE_MODE": "live"},
            r"mode='live' \(from environment AGENTTRACE_MODE\) is not valid; choose one of: record, replay",
        ),
        (
            {"governance_level": "strict"},
            {},
            r"governance_level='strict' .* choose one of: relaxed, governance",
        ),
        (
            {"api_url": "ftp://x"},
            {},
            r"api_url='ftp://x' .* unsupported scheme; use http:// or https://",
        ),
        ({"mask": ["("]}, {}, r"mask pattern '\(' \(from init\(\) argument\) is not a valid regex"),
        (
            {"mode": "replay"},
            {},
            r"mode='replay' .* needs events to replay: pass replay_events=.* AGENTTRACE_REPLAY_EVENTS_FILE",
        ),
        ({"colour": "red"}, {}, r"unknown init\(\) argument\(s\): colour"),
    ],
)
def test_invalid_values_have_actionable_messages(monkeypatch, overrides, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        resolve(overrides)


def test_invalid_value_from_file_names_the_file(clean_env):
    write_pyproject(clean_env, 'governance_level = "hard"\n')
    with pytest.raises(ConfigError, match=r"from pyproject.toml \[tool.agenttrace\]"):
        resolve({})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_bare_host_gets_https_and_trailing_slash_dropped():
    assert resolve({"api_url": "traces.example.com/"}).api_url == "https://traces.example.com"
    assert resolve({"api_url": "http://127.0.0.1:4318"}).api_url == "http://127.0.0.1:4318"


def test_values_are_normalised_case_insensitively():
    assert resolve({"governance_level": "GOVERNANCE"}).governance_level == "governance"


def test_repr_never_shows_the_key():
    settings = resolve({"api_key": "at_live_supersecretvalue"})
    assert "supersecret" not in repr(settings)
    assert "at_live_" in repr(settings)


def test_settings_are_frozen():
    settings = resolve({})
    with pytest.raises(AttributeError):
        settings.mode = "replay"  # type: ignore[misc]
