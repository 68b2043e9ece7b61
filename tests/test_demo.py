"""`make demo` end to end: record the example agent, then replay it offline under governance."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT, clean_env


def test_demo_records_and_replays_identically(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "demo.py")],
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replay matched: stdout identical, 0 requests reached the network" in result.stdout
