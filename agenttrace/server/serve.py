"""Running the backend: where its API keys come from, and the uvicorn server."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from .._config import API_KEY_PREFIXES
from .limits import Limits

GRACEFUL_SHUTDOWN_SECONDS = 10


def key_file_for(db_path: str | os.PathLike[str]) -> Path:
    """Generated keys live next to the database they open (never inside it)."""
    return Path(os.fspath(db_path) + ".keys")


def read_key_file(path: str | os.PathLike[str]) -> list[str]:
    """Keys one per line; blank lines and ``#`` comments ignored."""
    text = Path(path).read_text(encoding="utf-8")
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def generated_key(db_path: str | os.PathLike[str]) -> tuple[str, bool]:
    """The key stored next to ``db_path``, creating it (mode 0600) on first use.

    Returns (key, created): the caller prints a new key once, later starts reuse it silently.
    """
    path = key_file_for(db_path)
    if path.exists():
        keys = read_key_file(path)
        if keys:
            return keys[0], False
    key = "at_test_" + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# agenttrace serve API key (generated); keep this file private\n" + key + "\n")
    return key, True


def invalid_keys(keys: Sequence[str]) -> list[int]:
    """Positions of keys the SDK would refuse (it only sends at_live_/at_test_ keys)."""
    return [
        i for i, key in enumerate(keys) if not key.startswith(API_KEY_PREFIXES) or len(key) < 16
    ]


def run(
    *,
    host: str,
    port: int,
    db: str,
    api_keys: Sequence[str],
    limits: Limits,
    retain_days: float | None = None,
    log_level: str = "info",
) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests finish (and commit) before exit.

    Raises StoreUnavailable (before listening) when the database cannot be used.
    """
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from .app import create_app
    from .connections import guarded_protocol

    # Logs (access log included) go to stderr: stdout carries only data, such as a new key.
    log_config = copy.deepcopy(LOGGING_CONFIG)
    for handler in log_config["handlers"].values():
        handler["stream"] = "ext://sys.stderr"

    app = create_app(db, api_keys, limits=limits, retain_days=retain_days)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=log_config,
        http=guarded_protocol(limits.header_timeout, limits.max_connections_per_client),
        timeout_keep_alive=limits.idle_timeout,  # type: ignore[arg-type]  # a float works
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        ws="none",  # no WebSocket routes; an upgrade would also leave the connection guards
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
    )
    server = uvicorn.Server(config)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"agenttrace serve: listening on {host} over plain HTTP; API keys cross the network in "
            "the clear unless a TLS-terminating proxy sits in front",
            file=sys.stderr,
            flush=True,
        )
    location = app.state.store.location
    retention = f"; deleting traces after {retain_days:g} days" if retain_days else ""
    print(
        f"agenttrace serve: http://{host}:{port} (database {location}{retention}); "
        f"point agents at it with AGENTTRACE_API_URL=http://{host}:{port}",
        file=sys.stderr,
        flush=True,
    )
    server.run()
