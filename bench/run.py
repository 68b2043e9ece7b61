"""AgentTrace benchmarks, side by side with plain OpenTelemetry and vcrpy: ``make bench``.

Every variant of every case runs in a fresh interpreter. Rounds are interleaved: in each round
each group runs all its variants back to back (in a rotated order), so the variants of a
group share the machine's mood of that moment. Ratios are computed within each round and the
table shows the median over rounds; absolute times move from run to run on a shared machine,
the ratios are what to compare.

    .venv/bin/python bench/run.py                   # the full suite (~4 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick           # smoke run: 1 round, tiny sizes
    .venv/bin/python bench/run.py --only record,replay --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from harness import BENCH_DIR, PYTHON, REPO_ROOT, WorkerError, background, free_port, run_worker
from plan import Context, Group, plan
from report import render, summarize

RESULTS = BENCH_DIR / "results.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="AgentTrace benchmark suite")
    parser.add_argument("--quick", action="store_true", help="1 round, tiny sizes (smoke test)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5; quick: 1)")
    parser.add_argument("--only", default="", help="comma-separated cases to run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON path")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 5)
    only = {c.strip() for c in args.only.split(",") if c.strip()}
    started = time.time()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agenttrace-bench-")))
        ctx = start_servers(stack, tmp, rounds)
        ctx.quick = args.quick
        groups = [g for g in plan(ctx) if not only or g.case in only]
        prepare(ctx, groups)
        results = run_rounds(groups, rounds, ctx)
    summary = summarize(groups, results)
    document = {
        "meta": meta(args, rounds, started),
        "groups": summary["groups"],
        "budgets": summary["budgets"],
    }
    print(render(document))
    args.out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


# -- servers and fixtures -----------------------------------------------------------------------


def start_servers(stack: ExitStack, tmp: Path, rounds: int) -> Context:
    """The local servers every round talks to, each in its own process, stopped by ``stack``."""
    ctx = Context(tmp=tmp, api_keys=[f"at_test_bench_round_{r:04d}" for r in range(rounds)])

    def start(command: list[str], ready: str) -> str:
        return stack.enter_context(background(command, cwd=str(tmp), ready=ready))

    ctx.http_url = start([PYTHON, str(BENCH_DIR / "keepalive_server.py")], "listening on").split()[
        -1
    ]
    llm = [PYTHON, str(REPO_ROOT / "examples" / "llm_server.py"), "--port", "0"]
    ctx.llm_url = start([*llm, "--chunk-delay", "0.05"], "listening on").split()[-1]
    ctx.backend_url, ctx.backend_missing = start_backend(start, ctx)
    ctx.postgres, ctx.postgres_missing = start_postgres(stack)
    return ctx


def start_postgres(stack: ExitStack) -> tuple[Any, str | None]:
    """A throwaway PostgreSQL server for the ingest case (the tests' own), durable settings."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from _postgres import PostgresUnavailable, postgres

    try:
        return stack.enter_context(postgres(fast=False)), None
    except PostgresUnavailable as exc:
        return None, f"PostgreSQL not available ({exc})"


def start_backend(start: Any, ctx: Context) -> tuple[str | None, str | None]:
    """``agenttrace serve`` when the server extra is installed (else the case is skipped).

    One API key per round: each key is a project, so a round counts only its own spans.
    """
    for module in ("agenttrace.server.app", "agenttrace.exporters.backend", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return None, f"backend not available ({module} missing)"
    port = free_port()
    keys = [arg for key in ctx.api_keys for arg in ("--api-key", key)]
    command = [PYTHON, "-m", "agenttrace.cli", "serve", "--port", str(port)]
    command += ["--db", str(ctx.tmp / "bench.db"), "--log-level", "warning", *keys]
    try:
        start(command, "agenttrace serve:")
    except WorkerError as exc:
        return None, f"backend not available ({exc})"
    return f"http://127.0.0.1:{port}", None


def prepare(ctx: Context, groups: list[Group]) -> None:
    """Record the reference run (AgentTrace trace, vcrpy cassette) and the synthetic files."""
    needed = {g.case for g in groups}
    if not needed & {"replay", "scaling"}:
        return
    for recorder in ("agenttrace", "vcrpy"):
        workdir = ctx.tmp / f"prepare-{recorder}"
        result = run_worker(
            "case_replay.py",
            {
                "variant": f"prepare-{recorder}",
                "client": "httpx",
                "url": ctx.http_url + "/v1/chat/completions",
                "recorded": ctx.replay_calls,
                "workdir": str(workdir),
            },
            cwd=str(ctx.tmp),
            timeout=300,
        )
        if result.get("calls") != ctx.replay_calls:
            raise WorkerError(f"the {recorder} reference recording saw {result.get('calls')} calls")
        ctx.fixtures[recorder] = result["trace"]
    if "scaling" in needed:
        job = {"trace": ctx.fixtures["agenttrace"], "sizes": ctx.scaling_sizes, "dir": str(ctx.tmp)}
        made = run_worker("synth.py", job, cwd=str(ctx.tmp), timeout=300)
        for size, path in made["paths"].items():
            ctx.fixtures[f"events-{size}"] = path


# -- rounds -------------------------------------------------------------------------------------


def run_rounds(groups: list[Group], rounds: int, ctx: Context) -> dict[str, dict[str, list[Any]]]:
    """results[group][variant] = one result (or {"error"/"skipped"}) per round it ran in."""
    results: dict[str, dict[str, list[Any]]] = {g.name: {v: [] for v in g.variants} for g in groups}
    for r in range(rounds):
        began = time.perf_counter()
        for group in groups:
            if r >= group.rounds(ctx.quick):
                continue
            for variant in rotated(group.variants, r):
                results[group.name][variant].append(run_job(group, variant, r, ctx))
        print(f"round {r + 1}/{rounds} done in {time.perf_counter() - began:.0f}s", file=sys.stderr)
    return results


def rotated(variants: tuple[str, ...], r: int) -> list[str]:
    """Each variant takes each position in turn: no variant always runs first (cold) or last."""
    k = r % len(variants)
    return list(variants[k:] + variants[:k])


def run_job(group: Group, variant: str, r: int, ctx: Context) -> dict[str, Any]:
    if group.skipped:
        return {"skipped": group.skipped}
    job = group.job(variant, r, ctx)
    workdir = ctx.tmp / f"{group.name.replace('/', '-')}-{variant}-{r}"
    workdir.mkdir(parents=True, exist_ok=True)
    job["workdir"] = str(workdir)
    try:
        result = run_worker(group.script, job, cwd=str(workdir), timeout=group.timeout)
    except WorkerError as exc:
        print(f"  {group.name} {variant}: {exc}", file=sys.stderr)
        return {"error": str(exc)}
    return group.check(variant, result)


def meta(args: argparse.Namespace, rounds: int, started: float) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("agenttrace", "opentelemetry-sdk", "vcrpy", "httpx", "requests", "openai"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "quick": args.quick,
        "rounds": rounds,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "versions": versions,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
