"""From per-round worker results to medians, same-round ratios, budgets and the printed table.

A ratio is computed inside each round (the variants of a round ran back to back) and the
median is taken over rounds: on a shared machine that is far steadier than a ratio of medians
gathered at different moments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness import median
from plan import Group

Round = dict[str, dict[str, Any]]  # variant -> that round's result
Results = dict[str, dict[str, list[dict[str, Any]]]]

_NOT_METRICS = {"made", "seen", "trace", "lost"}


# -- per-round ratios, per case -----------------------------------------------------------------


def _get(rnd: Round, variant: str, metric: str) -> float | None:
    value = rnd.get(variant, {}).get(metric)
    return value if isinstance(value, (int, float)) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def record_ratios(rnd: Round) -> dict[str, float | None]:
    base = _get(rnd, "none", "per_call_us")
    added = {v: _minus(_get(rnd, v, "per_call_us"), base) for v in ("otel", "vcrpy", "agenttrace")}
    return {
        **{f"{v}_added_us": a for v, a in added.items()},
        "agenttrace_over_otel_added": _ratio(added["agenttrace"], added["otel"]),
    }


def replay_ratios(rnd: Round) -> dict[str, float | None]:
    at = _get(rnd, "agenttrace", "per_call_us")
    live = _get(rnd, "live", "per_call_us")
    return {
        "vcrpy_over_agenttrace": _ratio(_get(rnd, "vcrpy", "per_call_us"), at),
        "agenttrace_over_live": _ratio(at, live),
        "floor_over_live": _ratio(_get(rnd, "floor", "per_call_us"), live),
    }


def scaling_ratios(rnd: Round) -> dict[str, float | None]:
    sizes = sorted((int(v) for v in rnd), key=int)
    if len(sizes) < 2:
        return {}
    return {
        "largest_over_smallest": _ratio(
            _get(rnd, str(sizes[-1]), "per_call_us"), _get(rnd, str(sizes[0]), "per_call_us")
        )
    }


def stream_ratios(rnd: Round) -> dict[str, float | None]:
    base = _get(rnd, "none", "ttfc_ms")
    return {f"{v}_added_ms": _minus(_get(rnd, v, "ttfc_ms"), base) for v in ("agenttrace", "vcrpy")}


def memory_ratios(rnd: Round) -> dict[str, float | None]:
    base = _get(rnd, "none", "peak_rss_mb")
    return {
        f"{v}_added_mb": _minus(_get(rnd, v, "peak_rss_mb"), base) for v in ("otel", "agenttrace")
    }


def ingest_ratios(rnd: Round) -> dict[str, float | None]:
    one = _get(rnd, "postgres", "spans_per_s")
    return {
        "postgres_over_sqlite": _ratio(one, _get(rnd, "sqlite", "spans_per_s")),
        "two_replicas_over_one": _ratio(_get(rnd, "postgres-2", "spans_per_s"), one),
    }


RATIOS: dict[str, Callable[[Round], dict[str, float | None]]] = {
    "record": record_ratios,
    "replay": replay_ratios,
    "scaling": scaling_ratios,
    "stream": stream_ratios,
    "memory": memory_ratios,
    "ingest": ingest_ratios,
}


# -- summary ------------------------------------------------------------------------------------


def summarize(groups: list[Group], results: Results) -> dict[str, Any]:
    summary = {g.name: summarize_group(g, results[g.name]) for g in groups}
    return {"groups": summary, "budgets": budgets(summary)}


def summarize_group(group: Group, by_variant: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    variants = {}
    for variant, rounds in by_variant.items():
        ok = [r for r in rounds if "error" not in r and "skipped" not in r]
        metrics = sorted(
            {
                k
                for r in ok
                for k, v in r.items()
                if k not in _NOT_METRICS and isinstance(v, (int, float))
            }
        )
        variants[variant] = {
            "rounds": rounds,
            "median": {m: median([r.get(m) for r in ok]) for m in metrics},
            "skipped": next((r["skipped"] for r in rounds if "skipped" in r), None),
            "errors": [r["error"] for r in rounds if "error" in r],
        }
    count = max((len(r) for r in by_variant.values()), default=0)
    per_round = [
        {v: rs[i] for v, rs in by_variant.items() if i < len(rs) and _usable(rs[i])}
        for i in range(count)
    ]
    ratio_fn = RATIOS.get(group.case)
    ratios: dict[str, Any] = {}
    if ratio_fn:
        rows = [ratio_fn(rnd) for rnd in per_round]
        for name in sorted({k for row in rows for k in row}):
            values = [row.get(name) for row in rows]
            ratios[name] = {"rounds": values, "median": median(values)}
    return {"case": group.case, "variants": variants, "ratios": ratios}


def _usable(result: dict[str, Any]) -> bool:
    return "error" not in result and "skipped" not in result


# -- budgets ------------------------------------------------------------------------------------


def _ratio_median(summary: dict[str, Any], group: str, name: str) -> float | None:
    return summary.get(group, {}).get("ratios", {}).get(name, {}).get("median")


_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
}


def _budget(
    name: str, measured: float | None, limit: float, op: str, unit: str, why: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "measured": measured,
        "limit": f"{op} {limit:g}{unit}",
        "pass": None if measured is None else _OPS[op](measured, limit),
        "note": why if measured is None else "",
    }


def budgets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for client in ("httpx", "requests"):
        group = f"record/{client}"
        if group in summary:
            skipped = summary[group]["variants"].get("agenttrace", {}).get("skipped")
            out.append(
                _budget(
                    f"record {client}: AgentTrace added cost / plain OTel added cost",
                    _ratio_median(summary, group, "agenttrace_over_otel_added"),
                    1.5,
                    "<=",
                    "×",
                    skipped or "not measured",
                )
            )
    if "replay/httpx" in summary:
        out.append(
            _budget(
                "replay: vcrpy time / AgentTrace time",
                _ratio_median(summary, "replay/httpx", "vcrpy_over_agenttrace"),
                20,
                ">=",
                "×",
                "not measured",
            )
        )
        out.append(
            _budget(
                "replay: AgentTrace time / live call",
                _ratio_median(summary, "replay/httpx", "agenttrace_over_live"),
                0.5,
                "<=",
                "×",
                "not measured",
            )
        )
    if "scaling/httpx" in summary:
        out.append(
            _budget(
                "scaling (goal): per-call at largest / smallest recording",
                _ratio_median(summary, "scaling/httpx", "largest_over_smallest"),
                1.5,
                "<=",
                "×",
                "not measured",
            )
        )
    if "stream/openai" in summary:
        out.append(
            _budget(
                "stream: time to first chunk added by recording",
                _ratio_median(summary, "stream/openai", "agenttrace_added_ms"),
                5,
                "<",
                " ms",
                "not measured",
            )
        )
    if "export/backend" in summary:
        out += export_budgets(summary["export/backend"])
    return out


def export_budgets(group: dict[str, Any]) -> list[dict[str, Any]]:
    variant = group["variants"]["agenttrace"]
    why = variant["skipped"] or "; ".join(variant["errors"]) or "not measured"
    rounds = [r for r in variant["rounds"] if _usable(r)]
    lost = sum(1 for r in rounds if r.get("lost")) if rounds else None
    growth = variant["median"].get("rss_growth_mb")
    return [
        _budget(
            "export: rounds that lost spans (server count ≠ made, or dropped)",
            lost,
            0,
            "<=",
            "",
            why,
        ),
        _budget("export: RSS growth from 10% to 100% of the spans", growth, 16, "<=", " MB", why),
    ]


# -- rendering ----------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str = "", digits: int | None = None) -> str:
    if value is None:
        return "–"
    if digits is None:
        digits = 0 if abs(value) >= 100 else (1 if abs(value) >= 10 else 2)
    return f"{value:,.{digits}f}{unit}"


def _cell(group: dict[str, Any], variant: str, metric: str, unit: str = "") -> str:
    v = group["variants"].get(variant)
    if v is None:
        return "–"
    if v["skipped"]:
        return "skipped"
    if v["errors"] and not v["median"]:
        return "error"
    return _fmt(v["median"].get(metric), unit)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _r(group: dict[str, Any], name: str, unit: str = "", digits: int | None = None) -> str:
    return _fmt(group.get("ratios", {}).get(name, {}).get("median"), unit, digits)


def render(document: dict[str, Any]) -> str:
    groups = document["groups"]
    meta = document["meta"]
    parts = [
        f"AgentTrace benchmarks: {meta['rounds']} interleaved round(s), fresh process per variant; "
        f"medians, ratios computed within each round ({meta['machine']}, Python {meta['python']})"
    ]
    for title, fn in SECTIONS:
        text = fn(groups)
        if text:
            parts += ["", f"### {title}", "", text]
    parts += ["", "### Budgets", "", render_budgets(document["budgets"])]
    return "\n".join(parts)


def record_section(groups: dict[str, Any]) -> str:
    rows = []
    for client in ("httpx", "requests"):
        g = groups.get(f"record/{client}")
        if g is None:
            continue
        rows.append(
            [client, _cell(g, "none", "per_call_us")]
            + [
                f"{_cell(g, v, 'per_call_us')} (+{_r(g, f'{v}_added_us')})"
                for v in ("otel", "vcrpy", "agenttrace")
            ]
            + [_r(g, "agenttrace_over_otel_added", "×")]
        )
    if not rows:
        return ""
    header = [
        "client",
        "none µs",
        "plain OTel µs (+added)",
        "vcrpy record µs (+added)",
        "AgentTrace record µs (+added)",
        "AgentTrace added / OTel added",
    ]
    return _table(header, rows)


def replay_section(groups: dict[str, Any]) -> str:
    g = groups.get("replay/httpx")
    if g is None:
        return ""
    row = [_cell(g, v, "per_call_us") for v in ("live", "floor", "vcrpy", "agenttrace")]
    row += [
        _r(g, "vcrpy_over_agenttrace", "×"),
        _r(g, "agenttrace_over_live", "×"),
        _r(g, "floor_over_live", "×"),
    ]
    header = [
        "live call µs",
        "httpx alone (mock transport) µs",
        "vcrpy replay µs",
        "AgentTrace replay µs",
        "AgentTrace speed-up vs vcrpy",
        "AgentTrace / live",
        "httpx alone / live",
    ]
    return _table(header, [row])


def scaling_section(groups: dict[str, Any]) -> str:
    g = groups.get("scaling/httpx")
    if g is None:
        return ""
    rows = []
    for size in g["variants"]:
        v = g["variants"][size]["median"]
        rows.append([f"{int(size):,}", _fmt(v.get("per_call_us")), _fmt(v.get("load_s"), " s", 3)])
    text = _table(["recorded events", "replay µs per call", "load (init) time"], rows)
    return (
        text
        + f"\n\nper-call cost at the largest / smallest recording: {_r(g, 'largest_over_smallest', '×')}"
    )


def stream_section(groups: dict[str, Any]) -> str:
    g = groups.get("stream/openai")
    if g is None:
        return ""
    rows = [
        [
            name,
            _cell(g, v, "ttfc_ms", " ms"),
            _r(g, f"{v}_added_ms", " ms") if v != "none" else "",
            _cell(g, v, "total_ms", " ms"),
        ]
        for v, name in (
            ("none", "no recording"),
            ("agenttrace", "AgentTrace record"),
            ("vcrpy", "vcrpy record"),
        )
    ]
    return _table(
        ["openai stream=True, chunks 50 ms apart", "time to first chunk", "added", "whole stream"],
        rows,
    )


def export_section(groups: dict[str, Any]) -> str:
    g = groups.get("export/backend")
    if g is None:
        return ""
    v = g["variants"]["agenttrace"]
    if v["skipped"]:
        return f"skipped: {v['skipped']}"
    m = v["median"]
    row = [
        _fmt(m.get("spans_per_s"), "/s"),
        _fmt(m.get("agent_us_per_span"), " µs"),
        _fmt(m.get("bare_us_per_span"), " µs"),
        _fmt(m.get("rss_growth_mb"), " MB"),
        _fmt(m.get("server_spans")),
    ]
    return _table(
        [
            "spans/s into agenttrace serve",
            "agent-thread cost per span",
            "(span itself, no processor)",
            "RSS growth 10%→100%",
            "spans stored",
        ],
        [row],
    )


def memory_section(groups: dict[str, Any]) -> str:
    g = groups.get("memory/httpx")
    if g is None:
        return ""
    rows = [
        [
            name,
            _cell(g, v, "peak_rss_mb", " MB"),
            _r(g, f"{v}_added_mb", " MB") if v != "none" else "",
        ]
        for v, name in (
            ("none", "no instrumentation"),
            ("otel", "plain OTel"),
            ("agenttrace", "AgentTrace record (trace written)"),
        )
    ]
    return _table(["10,000 httpx calls", "peak RSS", "added"], rows)


def scrub_section(groups: dict[str, Any]) -> str:
    g = groups.get("scrub")
    if g is None:
        return ""
    v = g["variants"]["agenttrace"]
    if v["skipped"]:
        return f"skipped: {v['skipped']}"
    if not v["median"]:
        return "error: " + "; ".join(v["errors"])
    rows = [[name, _fmt(us, " µs")] for name, us in v["median"].items()]
    return _table(["scrubbing", "per event"], rows)


def clock_section(groups: dict[str, Any]) -> str:
    g = groups.get("clock")
    if g is None:
        return ""
    labels = {"none": "no AgentTrace", "record": "recorded", "replay": "served from the recording"}
    rows = []
    for variant, label in labels.items():
        v = g["variants"].get(variant)
        if not v or not v["median"]:
            rows.append([label, "error: " + "; ".join((v or {}).get("errors", [])), ""])
            continue
        rows.append(
            [
                label,
                _fmt(v["median"]["time_time_us"], " µs"),
                _fmt(v["median"]["datetime_now_us"], " µs"),
            ]
        )
    return _table(["one wall-clock read", "time.time()", "datetime.now()"], rows)


def ingest_section(groups: dict[str, Any]) -> str:
    g = groups.get("ingest/backend")
    if g is None:
        return ""
    row = [_cell(g, v, "spans_per_s", "/s") for v in ("sqlite", "postgres", "postgres-2")]
    row += [_r(g, "postgres_over_sqlite", "×"), _r(g, "two_replicas_over_one", "×")]
    return _table(
        [
            "SQLite",
            "PostgreSQL, 1 replica",
            "PostgreSQL, 2 replicas",
            "PostgreSQL / SQLite",
            "2 replicas / 1",
        ],
        [row],
    )


SECTIONS = [
    ("1. Record overhead per call (POST small JSON, local keep-alive server)", record_section),
    ("2. Replay per call (1,000-call run; AgentTrace under governance)", replay_section),
    ("3. Replay scaling with recording size", scaling_section),
    ("4. Streaming: time to first chunk", stream_section),
    ("5. Export to the backend (100,000 spans)", export_section),
    ("6. Memory: recording a 10,000-call run", memory_section),
    ("Scrubbing", scrub_section),
    ("Wall-clock reads (replay serves each one from the recording)", clock_section),
    (
        "7. Backend ingest: spans stored per second (512-span protobuf+gzip batches, 4 clients)",
        ingest_section,
    ),
]


def render_budgets(items: list[dict[str, Any]]) -> str:
    rows = []
    for b in items:
        status = "PASS" if b["pass"] else ("FAIL" if b["pass"] is False else "n/a")
        measured = _fmt(b["measured"]) if b["measured"] is not None else b["note"]
        rows.append([status, b["name"], measured, b["limit"]])
    return _table(["", "budget", "measured", "limit"], rows)
