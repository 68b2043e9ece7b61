"""The ``agenttrace`` command line.

Each subcommand is a pair of functions: ``_add_<name>(subparsers)`` declares its arguments and
``_<name>(args) -> int`` runs it. Progress and errors go to stderr; data (a pulled trace with
``-o -``) to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._config import Settings, mask_key, resolve
from .errors import ConfigError

_PROG = "agenttrace"


class CommandError(Exception):
    """A failure to report as one line on stderr with a non-zero exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except (CommandError, ConfigError) as exc:
        _say(f"error: {exc}")
        return exc.status if isinstance(exc, CommandError) else 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Record, replay and govern AI agent runs (AgentTrace)."
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in (_add_serve, _add_prune, _add_pull, _add_flush):
        add(sub)
    return parser


def _say(message: str) -> None:
    print(f"{_PROG}: {message}", file=sys.stderr, flush=True)


# -- serve --------------------------------------------------------------------------------------


def _add_serve(sub: Any) -> None:
    from .server import limits

    p = sub.add_parser(
        "serve",
        help="run the self-hosted backend (needs agenttrace[server])",
        description="Run the AgentTrace backend: OTLP/HTTP ingest at /v1/traces and the trace API "
        "at /api/v1/traces. Each API key is a separate project. With no key given, one is "
        "generated, stored next to the database and printed once. Several replicas can share one "
        "PostgreSQL database (--db postgresql://...), each given the same keys.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)"
    )
    p.add_argument("--port", type=int, default=4318, help="port (default: %(default)s)")
    _add_db(p)
    p.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="an accepted API key (repeat for several projects); at_live_... or at_test_...",
    )
    p.add_argument("--api-key-file", metavar="FILE", help="read API keys from FILE, one per line")
    _add_retain_days(
        p,
        "delete traces whose latest span arrived more than N days ago (checked "
        "at start and every hour; default: keep everything)",
    )
    for knob in limits.knobs():
        meta = knob.metadata
        default = limits.flag_default(knob)
        unit = f" {meta['unit']}" if meta["unit"] else ""
        zero = f"; 0: {meta['zero']}" if meta["zero"] else ""
        p.add_argument(
            meta["flag"],
            dest=knob.name,
            type=type(default),
            default=default,
            metavar="N",
            help=f"{meta['help']} (default: %(default)s{unit}{zero})",
        )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="server log level (default: %(default)s)",
    )
    p.set_defaults(handler=_serve)


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default="agenttrace.db",
        metavar="PATH_OR_URL",
        help="an SQLite database file, or postgresql://user:password@host:port/database "
        "(default: %(default)s)",
    )


def _add_retain_days(p: argparse.ArgumentParser, help: str, required: bool = False) -> None:
    p.add_argument(
        "--retain-days", type=float, metavar="N", required=required, default=None, help=help
    )


def _server_modules(command: str) -> Any:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401

        from .server import serve
    except ImportError as exc:
        raise CommandError(
            f"`agenttrace {command}` needs the server extra ({exc.name} is missing): "
            "pip install 'agenttrace[server]'",
            2,
        ) from None
    return serve


def _is_postgres(db: str) -> bool:
    from .server.store import POSTGRES_SCHEMES

    return db.startswith(POSTGRES_SCHEMES)


def _serve(args: argparse.Namespace) -> int:
    serve = _server_modules("serve")
    from .server import limits
    from .server.store import StoreUnavailable

    keys = list(args.api_key or [])
    if args.api_key_file:
        try:
            keys += serve.read_key_file(args.api_key_file)
        except OSError as exc:
            raise CommandError(f"--api-key-file {args.api_key_file}: {exc.strerror}", 2) from None
    if not keys and _is_postgres(args.db):
        raise CommandError(
            "with --db postgresql://... pass --api-key or --api-key-file (every replica must "
            "accept the same keys, so none is generated)",
            2,
        )
    if not keys:
        try:
            key, created = serve.generated_key(args.db)
        except OSError as exc:
            raise CommandError(
                f"cannot keep a generated API key next to {args.db}: {exc}"
            ) from None
        path = serve.key_file_for(args.db)
        if created:
            _say(f"generated an API key for this server (stored in {path}; shown only now):")
            print(key, flush=True)
        else:
            _say(f"using the API key stored in {path} ({mask_key(key)})")
        keys = [key]
    bad = serve.invalid_keys(keys)
    if bad:
        raise CommandError(
            f"API key #{bad[0] + 1} ({mask_key(keys[bad[0]])}) is not usable: keys start with at_live_ "
            "or at_test_ and have at least 16 characters (the SDK sends no other keys)",
            2,
        )
    _check_retain_days(args.retain_days)
    values = {}
    for knob in limits.knobs():
        value = getattr(args, knob.name)
        if value < 0 or (value == 0 and not knob.metadata["zero"]):
            floor = "0 or more" if knob.metadata["zero"] else "positive"
            raise CommandError(f"{knob.metadata['flag']} must be {floor}", 2)
        values[knob.name] = limits.from_flag(knob, value)
    try:
        serve.run(
            host=args.host,
            port=args.port,
            db=args.db,
            api_keys=keys,
            limits=limits.Limits(**values),
            retain_days=args.retain_days,
            log_level=args.log_level,
        )
    except StoreUnavailable as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot serve on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


def _check_retain_days(days: float | None) -> None:
    if days is not None and not days > 0:
        raise CommandError("--retain-days must be a positive number of days", 2)


# -- prune --------------------------------------------------------------------------------------


def _add_prune(sub: Any) -> None:
    p = sub.add_parser(
        "prune",
        help="delete old traces from the backend's database (needs agenttrace[server])",
        description="Delete the traces whose latest span arrived more than N days ago, with their "
        "spans, in small batches: a running `agenttrace serve` keeps ingesting meanwhile. "
        "`serve --retain-days N` does the same every hour.",
    )
    _add_db(p)
    _add_retain_days(p, "keep traces written to in the last N days", required=True)
    p.set_defaults(handler=_prune)


def _prune(args: argparse.Namespace) -> int:
    _server_modules("prune")
    import anyio

    from .server import retention
    from .server.store import StoreUnavailable
    from .server.stores import open_store

    _check_retain_days(args.retain_days)
    if not _is_postgres(args.db) and not os.path.exists(args.db):
        raise CommandError(f"no database at {args.db}; pass the --db that `serve` uses", 2)
    try:
        store = open_store(args.db)
        try:
            done = anyio.run(retention.prune, store, args.retain_days)
        finally:
            store.close()
    except StoreUnavailable as exc:
        raise CommandError(str(exc)) from None
    _say(
        f"deleted {done.traces} traces ({done.spans} spans) last written to more than "
        f"{args.retain_days:g} days ago from {store.location}"
    )
    return 0


# -- pull ---------------------------------------------------------------------------------------


def _add_pull(sub: Any) -> None:
    p = sub.add_parser(
        "pull",
        help="download a trace from the backend (to replay it)",
        description="Download a trace document (agenttrace.trace/1) from the backend named by "
        "AGENTTRACE_API_URL with AGENTTRACE_API_KEY, the same configuration the SDK uses.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("trace_id", nargs="?", metavar="TRACE_ID", help="the trace to download")
    which.add_argument("--last", action="store_true", help="the most recent run")
    which.add_argument("--last-failure", action="store_true", help="the most recent failed run")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write it (default ./<trace_id>.json; - for stdout)",
    )
    p.set_defaults(handler=_pull)


def _pull(args: argparse.Namespace) -> int:
    from ._trace import dumps

    settings = _backend_settings("pull")
    client = _ApiClient(settings)
    trace_id = args.trace_id
    if trace_id is None:
        params: dict[str, Any] = {"limit": 1}
        if args.last_failure:
            params["status"] = "error"
        traces = client.get("/api/v1/traces", params=params)["traces"]
        if not traces:
            kind = "failed runs" if args.last_failure else "traces"
            raise CommandError(
                f"no {kind} yet for key {mask_key(settings.api_key or '')} at {settings.api_url}"
            )
        trace_id = traces[0]["trace_id"]
    document = client.get(f"/api/v1/traces/{trace_id.strip().lower()}")
    output = args.output or f"{document['trace_id'] or trace_id}.json"
    text = dumps(document) + "\n"
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        _write_atomically(output, text)
    run = document.get("run") or {}
    _say(
        f"{'wrote ' + output if output != '-' else 'printed'}: run {run.get('name')!r} ({run.get('status')}), "
        f"{len(document.get('events', []))} events, {len(document.get('spans', []))} spans"
    )
    return 0


def _write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None


class _ApiClient:
    """GETs from the backend's trace API, turning failures into one-line CommandErrors."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.api_url
        self.key = settings.api_key or ""

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        import requests

        try:
            response = requests.get(
                self.url + path,
                params=params,
                headers={"Authorization": f"Bearer {self.key}", "Accept": "application/json"},
                timeout=(5, 60),
            )
        except requests.RequestException as exc:
            raise CommandError(
                f"cannot reach the backend at {self.url} ({type(exc).__name__}); "
                "is it running, and is AGENTTRACE_API_URL right?"
            ) from None
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError:
                raise CommandError(
                    f"{self.url}{path} did not answer with JSON; is AGENTTRACE_API_URL right?"
                ) from None
        message = _error_message(response)
        if response.status_code in (401, 403):
            raise CommandError(
                f"the backend at {self.url} rejected API key {mask_key(self.key)}: {message}"
            )
        if response.status_code == 404:
            raise CommandError(f"{message} (at {self.url}, for key {mask_key(self.key)})")
        raise CommandError(
            f"the backend at {self.url} answered HTTP {response.status_code}: {message}"
        )


def _error_message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return " ".join(response.text.split())[:200] or response.reason


def _backend_settings(command: str) -> Settings:
    settings = resolve({})
    if not settings.api_key:
        raise CommandError(
            f"`agenttrace {command}` needs an API key: set AGENTTRACE_API_KEY "
            "(and AGENTTRACE_API_URL for a self-hosted backend)",
            2,
        )
    return settings


# -- flush --------------------------------------------------------------------------------------


def _add_flush(sub: Any) -> None:
    p = sub.add_parser(
        "flush",
        help="deliver spooled traces to the backend now",
        description="Deliver the traces that earlier runs could not send (kept in "
        "AGENTTRACE_SPOOL_DIR, by default the user cache directory) to the backend configured by "
        "AGENTTRACE_API_URL and AGENTTRACE_API_KEY.",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="also send traces spooled under other API keys or URLs, with the current key and URL",
    )
    p.set_defaults(handler=_flush)


def _flush(args: argparse.Namespace) -> int:
    from .exporters import backend, spool

    root = spool.default_spool_dir()
    waiting = spool.buckets(root)
    if not waiting:
        _say(f"nothing to flush: the spool {root} is empty")
        return 0
    settings = _backend_settings("flush")
    assert settings.api_key
    mine = spool.Spool(root, settings.api_url, settings.api_key, spool.max_spool_bytes())
    others = [
        (target, entries) for target, directory, entries in waiting if directory != mine.directory
    ]
    if args.all and others:
        mine.adopt([entry for _, entries in others for entry in entries])
        others = []
    sender = backend.Sender(settings.api_url, settings.api_key)
    try:
        report = backend.deliver_spool(mine, sender)
    finally:
        sender.close()
    _say(
        f"delivered {report.delivered_batches} batches ({report.delivered_spans} spans) to {settings.api_url}"
        + (
            f"; dropped {report.dropped_spans} spans the backend refused"
            if report.dropped_spans
            else ""
        )
    )
    for target, entries in others:
        _say(
            f"{len(entries)} batches ({sum(e.spans for e in entries)} spans) wait for key {target.key_prefix} "
            f"at {target.api_url}: flush with that key, or `agenttrace flush --all` to send them with this one"
        )
    if report.failure is not None and report.failure.kind in ("auth", "endpoint"):
        raise CommandError(
            f"the backend at {settings.api_url} refused the upload ({report.failure.detail}) with API key "
            f"{mask_key(settings.api_key)}; {report.remaining_batches} batches stay in {mine.directory}"
        )
    if report.failure is not None:
        raise CommandError(
            f"{report.remaining_batches} batches ({report.remaining_spans} spans) could not be delivered "
            f"({report.failure.detail}); they stay in {mine.directory}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
