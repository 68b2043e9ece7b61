"""The benchmark harness runs end to end (``bench/run.py --quick``) and writes its results file.

Structure only: timing is measured by ``make bench``, never asserted in tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
GROUPS = {
    "record/httpx": {"none", "otel", "vcrpy", "agenttrace"},
    "record/requests": {"none", "otel", "vcrpy", "agenttrace"},
    "replay/httpx": {"live", "floor", "vcrpy", "agenttrace"},
    "scaling/httpx": {"50", "200"},
    "stream/openai": {"none", "agenttrace", "vcrpy"},
    "export/backend": {"agenttrace"},
    "memory/httpx": {"none", "otel", "agenttrace"},
    "scrub": {"agenttrace"},
    "clock": {"none", "record", "replay"},
    "ingest/backend": {"sqlite", "postgres", "postgres-2"},
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "run.py"), "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "### Budgets" in done.stdout
    return json.loads(out.read_text(encoding="utf-8"))


def test_meta_says_how_it_ran(results: dict) -> None:
    meta = results["meta"]
    assert meta["quick"] is True
    assert meta["rounds"] == 1
    assert {"python", "machine", "versions", "duration_s"} <= meta.keys()


def test_every_case_ran_every_variant_without_errors(results: dict) -> None:
    groups = results["groups"]
    assert set(groups) == set(GROUPS)
    for name, variants in GROUPS.items():
        assert set(groups[name]["variants"]) == variants, name
        for variant, summary in groups[name]["variants"].items():
            assert summary["errors"] == [], (name, variant, summary["errors"])
            assert len(summary["rounds"]) == 1, (name, variant)
            if summary["skipped"] is None:
                assert summary["median"], (name, variant)


def test_ratios_come_from_the_same_round(results: dict) -> None:
    ratios = results["groups"]["record/httpx"]["ratios"]
    assert set(ratios) >= {"agenttrace_over_otel_added", "otel_added_us", "agenttrace_added_us"}
    for ratio in ratios.values():
        assert len(ratio["rounds"]) == 1
    replay = results["groups"]["replay/httpx"]["ratios"]
    assert {"vcrpy_over_agenttrace", "agenttrace_over_live"} <= set(replay)


def test_budgets_are_listed_with_their_limits(results: dict) -> None:
    budgets = results["budgets"]
    names = " ".join(b["name"] for b in budgets)
    for word in ("record httpx", "replay", "stream", "export"):
        assert word in names
    for budget in budgets:
        assert {"name", "measured", "limit", "pass", "note"} <= budget.keys()
        assert budget["pass"] in (True, False, None)
