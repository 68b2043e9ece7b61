"""Settings: declared once as data, resolved argument > environment > config file > default."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_API_URL = "https://api.theagenttrace.com"
API_KEY_PREFIXES = ("at_live_", "at_test_")
MODES = ("record", "replay")
GOVERNANCE_LEVELS = ("relaxed", "governance")
JOURNAL_FSYNC = ("never", "always")


@dataclass(frozen=True)
class Param:
    """One configuration key: its init() argument, environment variable and default."""

    name: str
    env: str | None
    default: Any
    doc: str
    from_file: bool = True  # secrets are never read from a habitually committed file


PARAMS: tuple[Param, ...] = (
    Param(
        "api_key",
        "AGENTTRACE_API_KEY",
        None,
        "API key; must start with at_live_ or at_test_",
        from_file=False,
    ),
    Param(
        "api_url", "AGENTTRACE_API_URL", DEFAULT_API_URL, "Backend URL (a bare host gets https://)"
    ),
    Param("mode", "AGENTTRACE_MODE", "record", "record or replay"),
    Param("governance_level", "AGENTTRACE_GOVERNANCE_LEVEL", "relaxed", "relaxed or governance"),
    Param(
        "replay_events",
        "AGENTTRACE_REPLAY_EVENTS_FILE",
        None,
        "Events to replay: list, trace document or path",
    ),
    Param("mask", "AGENTTRACE_MASK", (), "Extra regexes masked in every string of every event"),
    Param(
        "scrub_keep",
        "AGENTTRACE_SCRUB_KEEP",
        (),
        "Keys exempt from default scrubbing (comma-separated); recorded in clear, with a warning",
    ),
    Param("local_dir", "AGENTTRACE_LOCAL_DIR", ".agenttrace", "Local trace store directory"),
    Param(
        "journal_fsync",
        "AGENTTRACE_JOURNAL_FSYNC",
        "never",
        "never or always: fsync the run journal after every event (survives a power cut, "
        "costs a disk flush per event)",
    ),
    Param(
        "service_name",
        "OTEL_SERVICE_NAME",
        None,
        "service.name resource attribute (default: script name)",
    ),
)
_PARAMS_BY_NAME = {p.name: p for p in PARAMS}


@dataclass(frozen=True)
class Settings:
    """The resolved configuration. ``sources`` says where each value came from."""

    api_key: str | None = None
    api_url: str = DEFAULT_API_URL
    mode: str = "record"
    governance_level: str = "relaxed"
    replay_events: Any = None
    mask: Any = ()
    scrub_keep: tuple[str, ...] = ()
    local_dir: str = ".agenttrace"
    journal_fsync: str = "never"
    service_name: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            if f.name == "api_key" and value:
                value = mask_key(value)
            elif f.name == "replay_events" and isinstance(value, (list, dict)):
                value = f"<{type(value).__name__}>"
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def replaying(self) -> bool:
        return self.mode == "replay"

    @property
    def strict(self) -> bool:
        return self.governance_level == "governance"


def mask_key(key: str) -> str:
    """The prefix of a key that can be shown in messages and logs (never the secret part)."""
    for prefix in API_KEY_PREFIXES:
        if key.startswith(prefix):
            return prefix + "…"
    return key[:3] + "…"


def _config_file() -> tuple[dict[str, Any], str | None]:
    path = os.environ.get("AGENTTRACE_CONFIG_FILE")
    if path:
        table_path: tuple[str, ...] = ()
        source = path
    else:
        path = "pyproject.toml"
        table_path = ("tool", "agenttrace")
        source = "pyproject.toml [tool.agenttrace]"
        if not os.path.exists(path):
            return {}, None
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"AGENTTRACE_CONFIG_FILE={path!r}: file not found; point it at a TOML file or unset it"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc}); fix the file") from None
    for key in table_path:
        data = data.get(key, {})
    if "tool" in data and not table_path and isinstance(data.get("tool"), dict):
        data = data["tool"].get("agenttrace", data)  # a pyproject-style file also works
    return dict(data), source


def resolve(overrides: Mapping[str, Any]) -> Settings:
    """Resolve every key by precedence, then validate. Raises ConfigError."""
    unknown = set(overrides) - set(_PARAMS_BY_NAME)
    if unknown:
        raise ConfigError(
            f"unknown init() argument(s): {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(_PARAMS_BY_NAME)}"
        )
    file_values, file_source = _config_file()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for param in PARAMS:
        if overrides.get(param.name) is not None:
            values[param.name], sources[param.name] = overrides[param.name], "init() argument"
        elif param.env and os.environ.get(param.env):
            values[param.name], sources[param.name] = (
                os.environ[param.env],
                f"environment {param.env}",
            )
        elif param.name in file_values:
            if not param.from_file:
                raise ConfigError(
                    f"{param.name} found in {file_source}: secrets are not read from config files; "
                    f"pass {param.name}= to init() or set {param.env}"
                )
            values[param.name], sources[param.name] = file_values[param.name], str(file_source)
        else:
            values[param.name], sources[param.name] = param.default, "default"
    return _validate(values, sources)


def _choice(name: str, value: Any, source: str, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else value
    if text not in choices:
        raise ConfigError(
            f"{name}={value!r} (from {source}) is not valid; choose one of: {', '.join(choices)}"
        )
    return text


def _validate(values: dict[str, Any], sources: dict[str, str]) -> Settings:
    key = values["api_key"]
    if key is not None and (not isinstance(key, str) or not key.startswith(API_KEY_PREFIXES)):
        shown = mask_key(key) if isinstance(key, str) else type(key).__name__
        raise ConfigError(
            f"api_key={shown!r} (from {sources['api_key']}) is not an AgentTrace key; "
            f"keys start with {' or '.join(API_KEY_PREFIXES)}"
        )
    url = values["api_url"]
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            f"api_url={url!r} (from {sources['api_url']}) must be a URL such as {DEFAULT_API_URL}"
        )
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "https://" + url
    elif not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"api_url={url!r} (from {sources['api_url']}) has an unsupported scheme; use http:// or https://"
        )
    values["api_url"] = url
    values["mode"] = _choice("mode", values["mode"], sources["mode"], MODES)
    values["governance_level"] = _choice(
        "governance_level",
        values["governance_level"],
        sources["governance_level"],
        GOVERNANCE_LEVELS,
    )
    values["journal_fsync"] = _choice(
        "journal_fsync", values["journal_fsync"], sources["journal_fsync"], JOURNAL_FSYNC
    )
    values["mask"] = _mask_value(values["mask"], sources["mask"])
    values["scrub_keep"] = _names_value("scrub_keep", values["scrub_keep"], sources["scrub_keep"])
    if values["mode"] == "replay" and values["replay_events"] is None:
        raise ConfigError(
            f"mode='replay' (from {sources['mode']}) needs events to replay: pass replay_events=[...] "
            "or a path to init(), or set AGENTTRACE_REPLAY_EVENTS_FILE=./.agenttrace/last.json"
        )
    if not isinstance(values["local_dir"], (str, os.PathLike)):
        raise ConfigError(
            f"local_dir={values['local_dir']!r} (from {sources['local_dir']}) must be a path"
        )
    values["local_dir"] = os.fspath(values["local_dir"])
    if values["service_name"] is None:
        values["service_name"] = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "python"
    return Settings(**values, sources=sources)


def _mask_value(value: Any, source: str) -> Any:
    if callable(value):
        return value
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"mask={value!r} (from {source}) must be a list of regexes or a callable")
    for pattern in value:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ConfigError(
                f"mask pattern {pattern!r} (from {source}) is not a valid regex: {exc}"
            ) from None
    return tuple(value)


def _names_value(name: str, value: Any, source: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{name}={value!r} (from {source}) must be a list of key names (or a comma-separated string)"
        )
    return tuple(v.strip().lower() for v in value if v.strip())
