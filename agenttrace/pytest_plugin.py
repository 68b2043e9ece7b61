"""The pytest plugin (entry point ``pytest11``): record a test's I/O once, replay it ever after.

    @pytest.mark.agenttrace                     # trace: <test dir>/traces/<module>/<test>.json
    def test_weather_agent(agenttrace_run):
        run_agent("Paris")
        assert agenttrace_run.calls == 3

    @pytest.mark.agenttrace("traces/refund.json", governance_level="relaxed")
    def test_refund(): ...

``--agenttrace-mode once`` (default) replays when the trace file exists and records it otherwise;
``replay`` makes a missing trace an error; ``record`` records every marked test again. Each marked
test is one AgentTrace session in the test's own process, from the start of its set-up to the
end of its call: entropy, clock, patches and violations never leak into the next test. Replays
run under ``governance`` unless the marker says otherwise: the network is closed and every
violation fails the test with the report. A test that fails while recording writes no trace, so
the next run records it again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._session import Session

MODES = ("once", "replay", "record")
_STATE = pytest.StashKey["_TestSession"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agenttrace", "AgentTrace record/replay")
    group.addoption(
        "--agenttrace-mode",
        choices=MODES,
        default="once",
        help="once: replay when the trace exists, else record it (default); replay: a missing "
        "trace is an error; record: record every marked test again",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "agenttrace(path=None, governance_level=None): record this test's I/O once and replay "
        "it after (see --agenttrace-mode)",
    )


@dataclasses.dataclass
class AgentTraceRun:
    """What the ``agenttrace_run`` fixture gives a test: the run being recorded or replayed."""

    mode: str  # "record" or "replay"
    path: Path  # the test's trace file
    session: Session

    @property
    def document(self) -> dict[str, Any]:
        """The trace document as it stands (complete once the test body has returned)."""
        session = self.session
        store = session.store
        if session.stopped:
            written = getattr(store, "last_path", None)
            if written and os.path.exists(written):
                return json.loads(Path(written).read_text(encoding="utf-8"))
            return {"events": []}
        run = session.runs.current()
        if store is None or run is None:
            return {"events": []}
        return store.document(run)

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.document["events"]

    @property
    def calls(self) -> int:
        """I/O calls so far (everything but entropy, DNS and clock reads)."""
        return sum(1 for e in self.events if e.get("kind") not in ("entropy", "dns", "clock"))

    @property
    def violations(self) -> list[str]:
        return self.session.violations


@dataclasses.dataclass
class _TestSession:
    run: AgentTraceRun
    stopped: bool = False
    report: str | None = None

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        session = self.run.session
        unplayed = session.unplayed()
        session.stop()
        violations = session.violations
        if violations:
            lines = [f"agenttrace: replay of {self.run.path} under governance failed:"]
            self.report = "\n".join(lines + [f"  - {v}" for v in violations])
        elif unplayed and session.settings.strict:
            self.report = f"agenttrace: {len(unplayed)} recorded call(s) were never made"


def _marker_trace_path(item: pytest.Item, marker: pytest.Mark) -> Path:
    given = marker.args[0] if marker.args else marker.kwargs.get("path")
    base = Path(str(item.fspath)).parent
    if given:
        path = Path(given)
        return path if path.is_absolute() else base / path
    module = Path(str(item.fspath)).stem
    name = re.sub(r"[^A-Za-z0-9_.\-\[\]]", "_", item.name)
    return base / "traces" / module / f"{name}.json"


def _start(item: pytest.Item, marker: pytest.Mark, local_dir: Path) -> _TestSession:
    from . import _config, _session

    option = item.config.getoption("--agenttrace-mode")
    path = _marker_trace_path(item, marker)
    if option == "replay" and not path.exists():
        raise pytest.UsageError(
            f"{item.nodeid}: no trace at {path} to replay; record it with --agenttrace-mode once "
            "(or record)"
        )
    replaying = option == "replay" or (option == "once" and path.exists())
    overrides: dict[str, Any] = {"local_dir": str(local_dir), "mode": "record"}
    if replaying:
        level = marker.kwargs.get("governance_level", "governance")
        overrides.update(mode="replay", governance_level=level, replay_events=str(path))
    settings = _config.resolve(overrides)
    # A test never ships anything to a backend: the trace is the test's file.
    settings = dataclasses.replace(settings, api_key=None)
    session = _session.Session(settings, owns_exit=False).start()
    run = AgentTraceRun("replay" if replaying else "record", path, session)
    return _TestSession(run)


@pytest.fixture(autouse=True)
def _agenttrace_session(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("agenttrace")
    if marker is None:
        yield
        return
    local_dir = request.getfixturevalue("tmp_path_factory").mktemp("agenttrace")
    state = _start(request.node, marker, local_dir)
    request.node.stash[_STATE] = state
    try:
        yield
    finally:
        state.stop()  # set-up failed, or a test body that never ran: still undo everything


@pytest.fixture
def agenttrace_run(request: pytest.FixtureRequest) -> AgentTraceRun:
    """The run this test records or replays (needs ``@pytest.mark.agenttrace``)."""
    state = request.node.stash.get(_STATE, None)
    if state is None:
        raise pytest.UsageError("the agenttrace_run fixture needs @pytest.mark.agenttrace")
    return state.run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    state = item.stash.get(_STATE, None)
    if state is None:
        return
    state.stop()
    run = state.run
    if state.report is not None:
        outcome.force_exception(pytest.fail.Exception(state.report, pytrace=False))
        return
    if run.mode == "record" and outcome.excinfo is None:
        _keep(run)


def _keep(run: AgentTraceRun) -> None:
    """The recorded trace becomes the test's file."""
    store = run.session.store
    written = getattr(store, "last_path", None)
    if written is None or not os.path.exists(written):
        return
    run.path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(written, run.path)
