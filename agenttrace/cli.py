"""The ``agenttrace`` command line.

Each subcommand is a pair of functions: ``_add_<name>(subparsers)`` declares its arguments and
``_<name>(args) -> int`` runs it. Progress and errors go to stderr; data (a pulled trace with
``-o -``) to stdout.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._config import Settings, mask_key, resolve
from ._trace import FAILED, REPLAYS_DIR
from .errors import ConfigError, EventsFileError

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
    _finalise_orphans()
    try:
        return handler(args)
    except (CommandError, ConfigError) as exc:
        _say(f"error: {exc}")
        return exc.status if isinstance(exc, CommandError) else 2
    except KeyboardInterrupt:
        return 130


def _finalise_orphans() -> None:
    """Runs whose process died (their journals in the local store) become traces first, so
    `pull --last-failure`, `flush` and the rest see them. Never fails the command."""
    try:
        from .exporters.recovery import finalise_orphans

        try:
            settings = resolve({})
        except ConfigError:
            return  # the command itself reports the configuration problem
        finalise_orphans(settings.local_dir, settings.api_url, settings.api_key)
    except Exception as exc:  # a broken journal must not break the command
        _say(f"could not look for runs to recover: {exc!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Record, replay and govern AI agent runs (AgentTrace)."
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in (
        _add_run,
        _add_replay,
        _add_show,
        _add_diff,
        _add_view,
        _add_serve,
        _add_prune,
        _add_pull,
        _add_flush,
    ):
        add(sub)
    return parser


def _say(message: str) -> None:
    print(f"{_PROG}: {message}", file=sys.stderr, flush=True)


# -- run and replay -------------------------------------------------------------------------------


def _add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a command in record mode",
        description="Run CMD with AgentTrace recording every Python process it starts (no "
        "agenttrace.init() needed; the AGENTTRACE_* settings apply). PYTHONHASHSEED is fixed "
        "when unset, and recorded, so that the replay iterates sets the same way. The exit "
        "status is CMD's.",
        usage="agenttrace run [-h] [--] CMD ...",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command to run")
    p.set_defaults(handler=_run)


def _command(words: list[str], usage: str) -> list[str]:
    command = words[1:] if words[:1] == ["--"] else words
    if not command:
        raise CommandError(f"no command given; usage: {usage}", 2)
    return command


def _run(args: argparse.Namespace) -> int:
    from . import _launch

    command = _command(args.command, "agenttrace run -- python my_agent.py")
    settings = resolve({})
    last = os.path.join(settings.local_dir, "last.json")
    before = _mtime(last)
    env = _launch.started_env(os.environ, _launch.record_settings(os.environ))
    status = _exit_status(_launch, command, env)
    _finalise_orphans()  # a command that was killed left its run's journal: its trace, now
    if settings.api_key is None and _mtime(last) == before:
        _say(f"no run was recorded in {settings.local_dir}: is `{command[0]}` a Python program?")
    return status


def _exit_status(launch: Any, command: list[str], env: dict[str, str]) -> int:
    try:
        return launch.run(command, env)
    except launch.CommandNotFound as exc:
        raise CommandError(f"{exc}; check the command after `--`", 127) from None


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _add_replay(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="run a command in replay mode, optionally with edited answers (what-if)",
        description="Run CMD replaying TRACE (a trace file or id; default: the last failed run "
        "if there is one, else the last run) with no real I/O, under governance unless "
        "--relaxed. --edit SEQ=FILE serves FILE's JSON instead of event SEQ's recorded answer "
        "(an HTTP response body, or a tool result) and lets the run continue from there: a "
        "counterfactual replay; calls that no longer match follow the governance level. Prints "
        "where the replayed run was written and, when it differs from the recording, the first "
        "divergence. The exit status is CMD's.",
        usage="agenttrace replay [-h] [TRACE | --last | --last-failure] [--governance | "
        "--relaxed] [--edit SEQ=FILE ...] -- CMD ...",
    )
    level = p.add_mutually_exclusive_group()
    level.add_argument(
        "--governance",
        dest="level",
        action="store_const",
        const="governance",
        help="any divergence or sandbox escape fails the run (the default)",
    )
    level.add_argument(
        "--relaxed",
        dest="level",
        action="store_const",
        const="relaxed",
        help="warn, and let unmatched calls go live (recorded into the replayed run)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--last", action="store_true", help="the most recent run")
    which.add_argument("--last-failure", action="store_true", help="the most recent failed run")
    p.add_argument(
        "--edit",
        action="append",
        default=[],
        metavar="SEQ=FILE",
        help="serve FILE's JSON as event SEQ's answer (repeatable; see `agenttrace show`)",
    )
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="[TRACE] -- CMD")
    p.set_defaults(handler=_replay, level="governance")


def _replay(args: argparse.Namespace) -> int:
    from . import _counterfactual, _launch
    from ._trace import REPLAYS_DIR, dumps

    usage = "agenttrace replay [TRACE] -- python my_agent.py"
    words = list(args.words)
    trace = None
    if words and words[0] != "--":
        split = words.index("--") if "--" in words else None
        if split is not None:
            if split != 1:
                raise CommandError(f"expected at most one TRACE before `--`; usage: {usage}", 2)
            trace, words = words[0], words[1:]
    command = _command(words, usage)
    document, label = _replay_source(trace, args)
    settings = resolve({})
    replays = os.path.join(settings.local_dir, REPLAYS_DIR)
    source = label if os.path.isfile(label) and not args.edit else None
    if source is None:  # edited, or fetched from the backend: the child reads a file of ours
        try:
            edits = [_counterfactual.parse_edit(spec) for spec in args.edit]
            served = _counterfactual.apply_edits(document, edits) if edits else document
        except _counterfactual.EditError as exc:
            raise CommandError(str(exc), 2) from None
        kind = "edited" if args.edit else "source"
        source = os.path.join(replays, f"{kind}-{document.get('trace_id') or 'trace'}.json")
        os.makedirs(replays, exist_ok=True)
        _write_atomically(source, dumps(served) + "\n")
    hash_seed = str((document.get("run") or {}).get("hash_seed") or "")
    env = _launch.started_env(
        os.environ,
        {
            **_launch.replay_settings(os.path.abspath(source), args.level, hash_seed),
            "AGENTTRACE_LOCAL_DIR": os.path.abspath(settings.local_dir),
        },
    )
    last = os.path.join(replays, "last.json")
    before = _mtime(last)
    status = _exit_status(_launch, command, env)
    if _mtime(last) == before:
        _say(f"no replayed run was written to {replays}: is `{command[0]}` a Python program?")
        return status or 1
    _say(f"replayed run written to {last} (recording: {label})")
    replayed, _ = _checked(last)
    from ._console import make_console, print_comparison
    from ._diff import compare

    comparison = compare(document, replayed, "recording", "replay")
    if comparison.equivalent:
        _say("the replay made every call of the recording, with the same answers")
    else:
        print_comparison(comparison, make_console(sys.stderr))
    return status


def _replay_source(trace: str | None, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    if trace is not None:
        return _load_trace(trace)
    if args.last:
        return _load_trace("last")
    if args.last_failure:
        return _load_trace("last-failure")
    try:
        return _load_trace("last-failure")
    except CommandError:
        return _load_trace("last")


# -- show ---------------------------------------------------------------------------------------


def _add_show(sub: Any) -> None:
    p = sub.add_parser(
        "show",
        help="print a run: its steps and calls, tokens, cost and error",
        description="Print a run as a tree of steps and the I/O inside them (seq, kind, method "
        "and URL or tool name, status, duration, streamed chunks, tokens, redactions), then its "
        "totals (calls, tokens, cost, wall time) and the error of a failed run. TRACE is a trace "
        "file or a trace id (from the local store, else from the backend with "
        "AGENTTRACE_API_KEY); the default is the most recent run.",
    )
    _add_trace_choice(p)
    p.add_argument("--json", action="store_true", help="print the outline as JSON, for machines")
    p.add_argument(
        "--all",
        action="store_true",
        help="list every event: do not fold runs of entropy/DNS events and of repeated calls",
    )
    p.set_defaults(handler=_show)


def _add_trace_choice(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "trace", nargs="?", metavar="TRACE", help="a trace file, or a trace id (or its start)"
    )
    which.add_argument("--last", action="store_true", help="the most recent run (the default)")
    which.add_argument("--last-failure", action="store_true", help="the most recent failed run")
    which.add_argument("--last-replay", action="store_true", help="the most recent replayed run")


def _show(args: argparse.Namespace) -> int:
    from ._outline import outline

    latest = "last-failure" if args.last_failure else "last-replay" if args.last_replay else "last"
    document, _ = _load_trace(args.trace or latest)
    view = outline(document)
    if args.json:
        _print_json(view.to_json())
        return 0
    from ._console import make_console, print_outline

    print_outline(view, make_console(), show_all=args.all)
    return 0


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=1, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


# -- diff ---------------------------------------------------------------------------------------


def _add_diff(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help="compare two runs call by call (exit 0 when equivalent, 1 when not)",
        description="Align the calls of two runs (a recording and its replay, two recordings, "
        "before and after a change) and print the first divergence (which call, which step, a "
        "JSON-path diff of request and response), then the calls changed, added and removed and "
        "the token, cost and latency deltas. A and B are trace files, trace ids, or `last`, "
        "`last-failure`, `last-replay` (e.g. `agenttrace diff last last-replay`). Ids, timestamps, durations, seq numbers and volatile headers "
        "(traceparent, user-agent, x-stainless-*, date...) never count as differences. Exit status "
        "0 when the runs are equivalent, 1 when not, 2 when a trace cannot be read.",
    )
    p.add_argument("a", metavar="A", help="the first run (e.g. the recording)")
    p.add_argument("b", metavar="B", help="the second run (e.g. its replay)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(handler=_diff)


def _diff(args: argparse.Namespace) -> int:
    from ._diff import compare

    document_a, label_a = _load_trace(args.a)
    document_b, label_b = _load_trace(args.b)
    comparison = compare(document_a, document_b, label_a, label_b)
    if args.json:
        _print_json(comparison.to_json())
    else:
        from ._console import make_console, print_comparison

        print_comparison(comparison, make_console())
    return 0 if comparison.equivalent else 1


# -- finding a trace ----------------------------------------------------------------------------

_TRACE_ID = re.compile(r"[0-9a-f]{4,32}")


_LATEST = {
    "last": "last.json",
    "last-failure": "last-failure.json",
    "last-replay": os.path.join(REPLAYS_DIR, "last.json"),
}


def _load_trace(ref: str) -> tuple[dict[str, Any], str]:
    """The trace document a command names, checked, and a label for it: a file, a trace id
    (or a unique start of one) in the local store, else a full id at the backend, or
    ``last`` / ``last-failure`` / ``last-replay``. Bad input is a one-line CommandError, status 2."""
    settings = resolve({})
    if ref in _LATEST and not os.path.exists(ref):
        return _latest(settings, ref)
    if os.path.exists(ref) or os.sep in ref or ref.endswith(".json"):
        return _checked(ref)
    trace_id = ref.strip().lower()
    if not _TRACE_ID.fullmatch(trace_id):
        raise CommandError(
            f"{ref}: no such file, and not a trace id (hex digits); pass a trace file, a trace id, "
            "--last or --last-failure",
            2,
        )
    stores = [
        os.path.join(settings.local_dir, "traces"),
        os.path.join(settings.local_dir, REPLAYS_DIR, "traces"),
    ]
    found = sorted(
        path
        for store in stores
        for path in glob.glob(os.path.join(glob.escape(store), trace_id + "*.json"))
    )
    if len(found) == 1:
        return _checked(found[0])
    if len(found) > 1:
        names = ", ".join(os.path.basename(f)[:-5] for f in found[:3])
        raise CommandError(
            f"{ref} is the start of {len(found)} trace ids ({names}...); give more of it", 2
        )
    if settings.api_key and len(trace_id) == 32:
        document = _ApiClient(settings).get(f"/api/v1/traces/{trace_id}", not_found_status=2)
        return _checked(document, f"trace {trace_id} at {settings.api_url}")
    where = "" if settings.api_key else " (set AGENTTRACE_API_KEY to look in the backend too)"
    raise CommandError(
        f"no trace {ref} in {stores[0]}{where}; pass a trace file, a full trace id, --last or "
        "--last-failure",
        2,
    )


def _latest(settings: Settings, which: str) -> tuple[dict[str, Any], str]:
    """The most recent run of a kind: the local store's, the backend's when a key is set (for
    recordings), and the newer of the two when both have one."""
    local = os.path.join(settings.local_dir, _LATEST[which])
    found = [_checked(local)] if os.path.exists(local) else []
    ask_backend = settings.api_key and which != "last-replay"  # replays stay local
    if ask_backend:
        params: dict[str, Any] = {"limit": 1}
        if which == "last-failure":
            params["status"] = ",".join(FAILED)
        client = _ApiClient(settings)
        try:
            listed = client.get("/api/v1/traces", params=params)["traces"]
            if listed:
                trace_id = listed[0]["trace_id"]
                document = client.get(f"/api/v1/traces/{trace_id}")
                found.append(_checked(document, f"trace {trace_id} at {settings.api_url}"))
        except CommandError as exc:
            if not found:
                raise
            _say(f"warning: {exc}; showing {local}")
    if not found:
        kind = {"last": "run", "last-failure": "failed run", "last-replay": "replayed run"}[which]
        elsewhere = (
            "" if ask_backend or which == "last-replay" else " and AGENTTRACE_API_KEY is not set"
        )
        raise CommandError(
            f"no {kind} yet: {local} does not exist{elsewhere}; record a run first, or pass a "
            "trace file or id",
            2,
        )
    return max(found, key=lambda item: str((item[0].get("run") or {}).get("started_at") or ""))


def _checked(source: Any, label: str | None = None) -> tuple[dict[str, Any], str]:
    from ._trace import load_document

    try:
        document, read_as = load_document(source, label or "trace")
    except EventsFileError as exc:
        raise CommandError(str(exc), 2) from None
    return document, label or read_as


# -- view ---------------------------------------------------------------------------------------


def _add_view(sub: Any) -> None:
    p = sub.add_parser(
        "view",
        help="read runs in the browser: the web viewer over the local store or a file",
        description="Serve the web viewer (the runs list, each run's waterfall and events, "
        "side-by-side diffs, downloads) for the local store, a directory of trace files or one "
        "trace file, on 127.0.0.1 with no key, and open it in the browser when on a desktop. "
        "PATH defaults to the local store (AGENTTRACE_LOCAL_DIR, else .agenttrace). Needs "
        "agenttrace[server].",
    )
    p.add_argument(
        "path", nargs="?", metavar="PATH", help="a local store, a directory or a trace file"
    )
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL")
    p.set_defaults(handler=_view)


def _view(args: argparse.Namespace) -> int:
    _server_modules("view")
    from .server.viewer import local

    path = args.path or resolve({}).local_dir
    if not os.path.exists(path):
        hint = (
            "record a run first (it lands in the local store), or pass a trace file or directory"
            if args.path is None
            else "pass a local store, a directory of trace files or a trace file"
        )
        raise CommandError(f"{path}: no such file or directory; {hint}", 2)
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a TCP port (0 to 65535)", 2)
    try:
        sock = local.bind(args.port)
    except OSError as exc:
        raise CommandError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}") from None
    url = local.start_url(sock, path)
    _say(f"viewing {path} at {url} (Ctrl-C to stop)")
    print(url, flush=True)
    local.serve(sock, path, open_browser=not args.no_browser)
    return 0


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
        import jinja2  # noqa: F401
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
    which.add_argument(
        "trace_id",
        nargs="?",
        metavar="TRACE_ID",
        help="the trace to download (with --as-test also a local trace file or id)",
    )
    which.add_argument("--last", action="store_true", help="the most recent run")
    which.add_argument("--last-failure", action="store_true", help="the most recent failed run")
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write it (default ./<trace_id>.json; - for stdout)",
    )
    out.add_argument(
        "--as-test",
        metavar="DIR",
        help="write the trace and a pytest file replaying its command under governance into DIR: "
        "it fails while the failure reproduces and passes once the agent is fixed",
    )
    p.set_defaults(handler=_pull)


def _pull(args: argparse.Namespace) -> int:
    from ._trace import dumps

    if args.as_test:
        return _pull_as_test(args)
    settings = _backend_settings("pull")
    client = _ApiClient(settings)
    trace_id = args.trace_id
    if trace_id is None:
        params: dict[str, Any] = {"limit": 1}
        if args.last_failure:
            params["status"] = ",".join(FAILED)
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


def _pull_as_test(args: argparse.Namespace) -> int:
    from ._as_test import write_test

    ref = args.trace_id or ("last-failure" if args.last_failure else "last")
    document, label = _load_trace(ref)
    try:
        trace_path, test_path = write_test(document, args.as_test)
    except ValueError as exc:
        raise CommandError(f"{label}: {exc}", 2) from None
    except OSError as exc:
        raise CommandError(f"cannot write into {args.as_test}: {exc.strerror}") from None
    _say(f"wrote {test_path} and {trace_path}: run it with `pytest {test_path}`")
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

    def get(
        self, path: str, params: dict[str, Any] | None = None, not_found_status: int = 1
    ) -> Any:
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
            raise CommandError(
                f"{message} (at {self.url}, for key {mask_key(self.key)})", not_found_status
            )
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
