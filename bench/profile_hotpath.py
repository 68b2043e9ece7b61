"""Profile AgentTrace's record or replay hot path with cProfile (what the optimisations used).

    .venv/bin/python bench/profile_hotpath.py record --client requests
    .venv/bin/python bench/profile_hotpath.py replay --sort cumtime --limit 50

Starts its own keep-alive server, records (and for replay, first records then replays) the
same calls as the benchmark, and prints the profile of the timed calls only.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

from harness import BENCH_DIR, PYTHON, background, run_worker


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "replay"))
    parser.add_argument("--client", default="httpx", choices=("httpx", "requests"))
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument(
        "--callers", default=None, help="also print who calls functions matching this"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def profiled(args: argparse.Namespace, url: str, workdir: str) -> None:
    """Runs inside a fresh worker process: set up, warm up, profile the timed calls."""
    from clients import SETUPS, http_poster

    import agenttrace

    if args.mode == "replay":
        agenttrace.init(
            mode="replay",
            governance_level="governance",
            replay_events=str(Path(workdir) / "recorded" / ".agenttrace" / "last.json"),
            local_dir=str(Path(workdir) / "replayed"),
        )
    else:
        SETUPS["agenttrace"](args.client, workdir)
    post = http_poster(args.client, url)
    warmup = min(100, args.calls // 10)
    for i in range(warmup):
        post(i)
    profile = cProfile.Profile()
    profile.enable()
    for i in range(warmup, args.calls):
        post(i)
    profile.disable()
    stats = pstats.Stats(profile).sort_stats(args.sort)
    stats.print_stats(args.limit)
    if args.callers:
        stats.print_callers(args.callers)


def main() -> None:
    args = parse_args()
    if args.worker:
        url, workdir = args.worker.split("|")
        profiled(args, url, workdir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        command = [PYTHON, str(BENCH_DIR / "keepalive_server.py")]
        with background(command, cwd=tmp, ready="listening on") as line:
            url = line.split()[-1] + "/v1/chat/completions"
            if args.mode == "replay":
                job = {"variant": "prepare-agenttrace", "client": args.client, "url": url}
                run_worker(
                    "case_replay.py",
                    {**job, "recorded": args.calls, "workdir": str(Path(tmp) / "recorded")},
                    cwd=tmp,
                    timeout=300,
                )
            import subprocess

            from harness import clean_env

            argv = [a for a in sys.argv[1:]] + ["--worker", f"{url}|{tmp}"]
            subprocess.run([PYTHON, __file__, *argv], cwd=tmp, env=clean_env(), check=False)


if __name__ == "__main__":
    main()
