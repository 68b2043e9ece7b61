"""What the suite runs: the cases, their variants and sizes (full and --quick).

A :class:`Group` is a set of variants measured against each other in the same round; the
report computes its ratios from one round's results at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Job = dict[str, Any]


@dataclass
class Context:
    tmp: Path
    api_keys: list[str]
    quick: bool = False
    http_url: str = ""
    llm_url: str = ""
    backend_url: str | None = None
    backend_missing: str | None = None
    postgres: Any = None  # a throwaway server (tests/_postgres.py): .database() -> a fresh URL
    postgres_missing: str | None = None
    fixtures: dict[str, str] = field(default_factory=dict)

    @property
    def replay_calls(self) -> int:
        return 40 if self.quick else 1000

    @property
    def scaling_sizes(self) -> tuple[int, ...]:
        return (50, 200) if self.quick else (100, 1_000, 10_000, 100_000)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass
class Group:
    case: str
    name: str
    script: str
    variants: tuple[str, ...]
    job_for: Callable[[str, int], Job]  # (variant, round) -> worker params
    check: Callable[[str, dict[str, Any]], dict[str, Any]] = lambda v, r: r
    timeout: float = 180
    max_rounds: int = 5
    skipped: str | None = None

    def rounds(self, quick: bool) -> int:
        return 1 if quick else self.max_rounds

    def job(self, variant: str, r: int, ctx: Context) -> Job:
        return self.job_for(variant, r)


def plan(ctx: Context) -> list[Group]:
    return [
        *record_groups(ctx),
        replay_group(ctx),
        scaling_group(ctx),
        stream_group(ctx),
        export_group(ctx),
        memory_group(ctx),
        scrub_group(),
        clock_group(ctx),
        ingest_group(ctx),
    ]


# -- verification: a variant that saw nothing is not a measurement ------------------------------


def check_seen(variant: str, result: dict[str, Any]) -> dict[str, Any]:
    """Refuse results whose instrumentation did not capture every call it was timed on."""
    seen, made = result.get("seen", {}), result.get("made", 0)
    if variant == "otel" and seen.get("spans", 0) < made:
        return {"error": f"plain OpenTelemetry exported {seen.get('spans')} spans for {made} calls"}
    if variant in ("vcrpy", "agenttrace"):
        calls = seen.get("calls", 0)
        if calls == 0 and variant == "agenttrace":
            return {"skipped": "AgentTrace does not capture this client yet (no instrumentor)"}
        if calls != made:
            return {"error": f"{variant} recorded {calls} of {made} calls"}
    return result


def check_export(variant: str, result: dict[str, Any]) -> dict[str, Any]:
    if result.get("server_spans") != result.get("made") or result.get("dropped"):
        result["lost"] = True  # reported as a failed budget, not hidden
    return result


def check_stored(variant: str, result: dict[str, Any]) -> dict[str, Any]:
    if "skipped" not in result and result.get("server_spans") != result.get("made"):
        return {"error": f"the server stored {result.get('server_spans')} of {result.get('made')}"}
    return result


# -- the cases ----------------------------------------------------------------------------------


def record_groups(ctx: Context) -> list[Group]:
    def job_for(client: str) -> Callable[[str, int], Job]:
        return lambda v, r: {
            "variant": v,
            "client": client,
            "url": ctx.http_url + "/v1/chat/completions",
            "warmup": ctx.size(200, 20),
            "calls": ctx.size(2000, 100),
            "batches": ctx.size(5, 2),
        }

    return [
        Group(
            "record",
            f"record/{client}",
            "case_record.py",
            ("none", "otel", "vcrpy", "agenttrace"),
            job_for(client),
            check_seen,
            timeout=120,
        )
        for client in ("httpx", "requests")
    ]


def replay_group(ctx: Context) -> Group:
    recorded = ctx.replay_calls

    def job_for(v: str, r: int) -> Job:
        slow = v == "vcrpy"  # ~40 ms a call: a spread-out tenth of the run says enough
        return {
            "variant": v,
            "client": "httpx",
            "url": ctx.http_url + "/v1/chat/completions",
            "recorded": recorded,
            "sample": recorded // 10 if slow else recorded,
            "warmup": ctx.size(5 if slow else 50, 2 if slow else 5),
            "batches": ctx.size(5, 1),
            "events": ctx.fixtures.get("agenttrace"),
            "cassette": ctx.fixtures.get("vcrpy"),
        }

    return Group(
        "replay",
        "replay/httpx",
        "case_replay.py",
        ("live", "floor", "vcrpy", "agenttrace"),
        job_for,
    )


def scaling_group(ctx: Context) -> Group:
    def job_for(v: str, r: int) -> Job:
        size = int(v)
        return {
            "variant": "agenttrace",
            "client": "httpx",
            "url": ctx.http_url + "/v1/chat/completions",
            "recorded": size,
            "sample": min(size, ctx.size(1000, 50)),
            "warmup": ctx.size(50, 5),
            "batches": ctx.size(5, 1),
            "events": ctx.fixtures.get(f"events-{size}"),
        }

    sizes = tuple(str(s) for s in ctx.scaling_sizes)
    return Group("scaling", "scaling/httpx", "case_replay.py", sizes, job_for, max_rounds=3)


def stream_group(ctx: Context) -> Group:
    def job_for(v: str, r: int) -> Job:
        return {"variant": v, "base_url": ctx.llm_url, "streams": ctx.size(3, 1)}

    return Group(
        "stream",
        "stream/openai",
        "case_stream.py",
        ("none", "agenttrace", "vcrpy"),
        job_for,
        check_seen,
        timeout=60,
    )


def export_group(ctx: Context) -> Group:
    def job_for(v: str, r: int) -> Job:
        return {
            "api_url": ctx.backend_url,
            "api_key": ctx.api_keys[r],
            "spans": ctx.size(100_000, 2_000),
            "per_trace": ctx.size(1000, 500),
            "block": ctx.size(2000, 1000),
        }

    return Group(
        "export",
        "export/backend",
        "case_export.py",
        ("agenttrace",),
        job_for,
        check_export,
        max_rounds=3,
        skipped=ctx.backend_missing,
    )


def memory_group(ctx: Context) -> Group:
    def job_for(v: str, r: int) -> Job:
        return {
            "variant": v,
            "client": "httpx",
            "url": ctx.http_url + "/v1/chat/completions",
            "warmup": 0,
            "calls": ctx.size(10_000, 200),
            "batches": 1,
        }

    return Group(
        "memory",
        "memory/httpx",
        "case_record.py",
        ("none", "otel", "agenttrace"),
        job_for,
        check_seen,
        max_rounds=3,
    )


def scrub_group() -> Group:
    return Group("scrub", "scrub", "case_scrub.py", ("agenttrace",), lambda v, r: {}, max_rounds=1)


def clock_group(ctx: Context) -> Group:
    reads = ctx.size(200_000, 5_000)

    def job_for(variant: str, r: int) -> Job:
        return {"variant": variant, "reads": reads, "workdir": str(ctx.tmp / f"clock-{r}")}

    return Group(
        "clock", "clock", "case_clock.py", ("none", "record", "replay"), job_for, max_rounds=3
    )


INGEST_REPLICAS = {"sqlite": 1, "postgres": 1, "postgres-2": 2}


def ingest_group(ctx: Context) -> Group:
    def job_for(v: str, r: int) -> Job:
        postgres = v.startswith("postgres")
        missing = ctx.backend_missing or (ctx.postgres_missing if postgres else None)
        return {
            "variant": v,
            "db": ctx.postgres.database("bench") if postgres and not missing else None,
            "missing": missing,
            "replicas": INGEST_REPLICAS[v],
            "spans": ctx.size(50_000, 2_000),
            "batch": 512,
            "clients": 4,
        }

    return Group(
        "ingest",
        "ingest/backend",
        "case_ingest.py",
        tuple(INGEST_REPLICAS),
        job_for,
        check_stored,
        max_rounds=3,
    )
