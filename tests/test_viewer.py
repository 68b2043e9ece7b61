"""The web viewer in a real headless browser: Debian's chromium driven by playwright.

A real agent (openai SDK, requests, a step filter, a streamed answer, an XSS payload in a model
answer) is recorded against the local LLM server and shipped to a real `agenttrace serve`; the
browser signs in, lists and opens runs, clicks events, downloads the trace (which then replays
under governance with the very same output), compares runs, and checks that another key sees
nothing and that nothing in a trace ever runs as script. `agenttrace view` is driven the same way
over a local store. One browser for the module; each test gets a fresh context (no cookies).

Set AGENTTRACE_DOCS_SCREENSHOT=docs/viewer-run.png to refresh the README's screenshot.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from _viewer_agent import AGENT, PAYLOAD, Run, record
from conftest import REPO_ROOT, agenttrace_serve, clean_env, run_python, stop
from llm_server import LLMServer

from agenttrace import _diff

# Debian's chromium (.ci/run installs it); playwright drives it as it is.
CHROMIUM = os.environ.get("AGENTTRACE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "at_test_viewer_0123456789abcdefghijk"
OTHER_KEY = "at_test_viewer_other_9876543210zyxwv"
PRICED = importlib.util.find_spec("genai_prices") is not None


def _traces(url: str, key: str) -> list[dict[str, Any]]:
    response = requests.get(
        url + "/api/v1/traces", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    response.raise_for_status()
    return response.json()["traces"]


def _document(url: str, key: str, trace_id: str) -> dict[str, Any]:
    response = requests.get(
        f"{url}/api/v1/traces/{trace_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    response.raise_for_status()
    return response.json()


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM}: .ci/run installs it (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # the test extra brings it
        pytest.skip(f"playwright is not installed ({exc}): pip install -e '.[test]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; scripts that break the page fail the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], f"script errors on the page: {errors}"


@dataclass
class Backend:
    url: str
    ok: Run
    failed: Run
    oslo: Run
    workdir: Path
    llm_url: str  # where the runs were recorded against (replay matches on it; never called)


@pytest.fixture(scope="module")
def backend(
    module_llm_server: LLMServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """A real `agenttrace serve` with two projects, and three runs of AGENT in the first."""
    directory = tmp_path_factory.mktemp("viewer-backend")
    with agenttrace_serve(directory, "--api-key", KEY, "--api-key", OTHER_KEY) as served:
        env = {"AGENTTRACE_API_KEY": KEY, "AGENTTRACE_API_URL": served.url}
        url = module_llm_server.url
        runs = [
            record(directory / "ok", url, **env),
            record(directory / "failed", url, FAIL="1", **env),
            record(directory / "oslo", url, CITY="Oslo", **env),
        ]
        deadline = time.monotonic() + 30
        listed: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            listed = _traces(served.url, KEY)
            if len(listed) == 3 and all(t["status"] != "unset" for t in listed):
                break
            time.sleep(0.1)
        assert len(listed) == 3, listed
        # Newest first: oslo, failed, ok.
        for run, trace in zip(reversed(runs), listed, strict=True):
            run.trace_id = trace["trace_id"]
        yield Backend(served.url, *runs, workdir=directory, llm_url=url)


def _sign_in(page: Any, url: str, key: str = KEY) -> None:
    page.goto(url + "/")
    assert "/signin" in page.url
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


# -- signing in -----------------------------------------------------------------------------------


def test_no_key_sees_the_sign_in_page_and_nothing_else(page: Any, backend: Backend) -> None:
    for path in ("/", f"/runs/{backend.ok.trace_id}", "/?status=error"):
        page.goto(backend.url + path)
        assert page.url.startswith(backend.url + "/signin?next=")
        assert page.locator("#api_key").get_attribute("type") == "password"
        assert "viewer_agent" not in page.content()
    raw = requests.get(f"{backend.url}/runs/{backend.ok.trace_id}/download", allow_redirects=False)
    assert raw.status_code == 303 and raw.headers["location"].startswith("/signin")
    assert "hunter2" not in raw.text and "viewer_agent" not in raw.text
    pane = requests.get(f"{backend.url}/runs/{backend.ok.trace_id}/events/2")
    assert pane.status_code == 401 and "viewer_agent" not in pane.text
    # A wrong key stays on the sign-in page, saying so.
    page.goto(backend.url + "/")
    page.fill("#api_key", "at_test_not_a_key_of_this_server")
    page.click("button[type=submit]")
    assert "not an API key of this server" in page.inner_text(".error-box")
    assert not [c for c in page.context.cookies() if c["name"] == "agenttrace_session"]


def test_sign_in_list_filter_open_a_run_click_events_see_redactions(
    page: Any, backend: Backend
) -> None:
    _sign_in(page, backend.url)
    session = next(c for c in page.context.cookies() if c["name"] == "agenttrace_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert KEY not in session["value"] and KEY not in page.content() and KEY not in page.url
    rows = page.locator("table.runs tbody tr.run")
    assert rows.count() == 3
    first = rows.nth(0).inner_text()
    assert "viewer_agent" in first and "ok" in first
    cells = rows.nth(0).locator("td")
    assert cells.nth(5).inner_text() == "3"  # calls: the weather call and two LLM calls
    assert " in " in cells.nth(6).inner_text() and " out" in cells.nth(6).inner_text()
    assert ("$" in cells.nth(7).inner_text()) is PRICED
    failed_row = rows.nth(1).inner_text()
    assert "error" in failed_row and "the agent gave up <b>loudly</b>" in failed_row
    # Filter by status.
    page.click("nav.filters >> text=error")
    assert page.locator("table.runs tbody tr.run").count() == 1
    assert backend.failed.trace_id[:12] in page.inner_text("table.runs")
    # Open the first run.
    page.goto(backend.url + "/")
    page.click(f"tr[data-run='{backend.ok.trace_id}'] a.run-link")
    page.wait_for_url(f"{backend.url}/runs/{backend.ok.trace_id}")
    steps = page.locator("table.waterfall tr.step .step-name").all_inner_texts()
    assert steps == ["Plan", "Look up", "Echo", "Answer"]
    bars = page.locator("table.waterfall tr.event svg.bar rect")
    assert bars.count() >= 4
    # The weather call: its password was redacted, and the page says so, highlighted.
    weather = page.locator("a.event-link", has_text="/weather")
    weather.click()
    pane = page.locator("#pane .event-detail")
    pane.wait_for()
    assert "/weather" in pane.locator("h2").inner_text()
    marks = pane.locator("mark.redacted")
    assert marks.count() >= 2 and marks.first.inner_text() == "[REDACTED]"
    assert "request.url" in pane.locator(".redactions").inner_text()
    assert "hunter2" not in page.content()
    assert f"?event={weather.get_attribute('data-seq')}" in page.url
    assert page.locator("tr.event.selected").count() == 1
    # The streamed answer: assembled into the text the SDK gave the agent.
    page.locator("a.event-link", has_text="chat/completions").last.click()
    page.wait_for_selector("#pane .event-detail h3:has-text('Answer (stream assembled)')")
    detail = page.locator("#pane .event-detail")
    assert backend.ok.output["answer"] in detail.locator(".part").first.inner_text()
    assert "chunks, first at" in detail.inner_text()
    screenshots = backend.workdir / ".agenttrace"
    screenshots.mkdir(exist_ok=True)
    page.screenshot(path=str(screenshots / "viewer-run.png"), full_page=True)
    docs_copy = os.environ.get("AGENTTRACE_DOCS_SCREENSHOT")
    if docs_copy:
        page.set_viewport_size({"width": 1440, "height": 900})
        page.screenshot(path=str(REPO_ROOT / docs_copy))
    # The failed run shows its error.
    page.goto(f"{backend.url}/runs/{backend.failed.trace_id}")
    assert "the agent gave up <b>loudly</b>" in page.inner_text(".run-error")


def test_an_xss_payload_in_a_recorded_answer_is_only_text(page: Any, backend: Backend) -> None:
    # Any script or handler the page tried to run would be blocked by the CSP and reported here:
    # none must even be attempted (the payload is escaped, not merely blocked).
    page.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " (e) => window.__violations.push(e.violatedDirective));"
    )
    _sign_in(page, backend.url)
    response = page.goto(f"{backend.url}/runs/{backend.ok.trace_id}")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert backend.ok.output["echo"] == "Hello! You said: " + PAYLOAD  # what the model answered
    echo = page.locator("a.event-link", has_text="chat/completions").first
    echo.click()
    page.wait_for_selector("#pane .event-detail h3:has-text('Answer')")
    text = page.locator("#pane .event-detail .part").first.inner_text()
    assert PAYLOAD in text  # shown, character for character, as text
    assert page.locator("#pane img").count() == 0 and page.locator("#pane script").count() == 0
    # The same pane without JavaScript's help (a full page load) renders it as text too.
    page.goto(page.url)
    assert PAYLOAD in page.locator("#pane .event-detail").inner_text()
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("window.__violations") == []


def test_download_the_trace_and_replay_it_under_governance(
    page: Any, backend: Backend, tmp_path: Path
) -> None:
    _sign_in(page, backend.url)
    page.goto(f"{backend.url}/runs/{backend.ok.trace_id}")
    with page.expect_download() as waited:
        page.click("#download")
    download = waited.value
    assert download.suggested_filename == f"{backend.ok.trace_id}.json"
    saved = tmp_path / "downloaded.json"
    download.save_as(str(saved))
    document = json.loads(saved.read_text(encoding="utf-8"))
    assert document == _document(backend.url, KEY, backend.ok.trace_id)
    assert "hunter2" not in saved.read_text(encoding="utf-8")
    for attempt in range(2):  # replay is exact every time
        replayed = run_python(
            AGENT,
            env={
                "URL": backend.llm_url,
                "PAYLOAD": PAYLOAD,
                "AGENTTRACE_MODE": "replay",
                "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
                "AGENTTRACE_REPLAY_EVENTS_FILE": str(saved),
            },
            cwd=tmp_path,
        )
        assert replayed.returncode == 0, (attempt, replayed.stderr)
        assert replayed.stdout == backend.ok.stdout


def test_another_key_sees_nothing_of_the_first_project(page: Any, backend: Backend) -> None:
    _sign_in(page, backend.url, OTHER_KEY)
    assert page.locator("table.runs tbody tr.run").count() == 0
    assert "No runs" in page.inner_text("table.runs")
    for path in (
        f"/runs/{backend.ok.trace_id}",
        f"/runs/{backend.ok.trace_id}/download",
        f"/runs/{backend.ok.trace_id}/events/2",
        f"/runs/{backend.ok.trace_id}/events/2/request",
        f"/diff?a={backend.ok.trace_id}&b={backend.oslo.trace_id}",
    ):
        response = page.goto(backend.url + path)
        assert response.status == 404, path
        assert "No such run" in page.inner_text("h1")
        assert "viewer_agent" not in page.content() and "Paris" not in page.content()


def test_compare_two_runs_side_by_side_as_agenttrace_diff_aligns_them(
    page: Any, backend: Backend
) -> None:
    _sign_in(page, backend.url)
    page.check(f"tr[data-run='{backend.ok.trace_id}'] input[type=checkbox]")
    page.check(f"tr[data-run='{backend.oslo.trace_id}'] input[type=checkbox]")
    page.click("text=Compare the two ticked runs")
    page.wait_for_url(f"{backend.url}/diff?a=*")
    assert "Not equivalent" in page.inner_text(".verdict")
    a, b = page.url.split("a=", 1)[1].split("&b=")
    expected = _diff.compare(_document(backend.url, KEY, a), _document(backend.url, KEY, b))
    ops = [
        row.get_attribute("class").split()[0][3:]
        for row in page.locator("table.diff tbody tr").all()
    ]
    assert ops == [pair.op for pair in expected.pairs]
    first = page.locator("table.diff tr.first")
    assert first.count() == 1 and "first divergence" in first.inner_text()
    assert expected.first_divergence is not None
    for difference in expected.first_divergence.request:
        assert difference in first.inner_text()
    assert "/weather" in first.inner_text()
    # Each side links to its event.
    first.locator("td").nth(1).locator("a").click()
    page.wait_for_selector("#pane .event-detail")
    assert page.url.startswith(f"{backend.url}/runs/{a}?event=")


def test_paging_with_the_store_cursor(page: Any, backend: Backend) -> None:
    _sign_in(page, backend.url)
    seen = []
    page.goto(backend.url + "/?limit=1")
    for _ in range(3):
        rows = page.locator("table.runs tbody tr.run")
        assert rows.count() == 1
        seen.append(rows.first.get_attribute("data-run"))
        older = page.locator("a.older")
        if older.count() == 0:
            break
        older.click()
    assert seen == [backend.oslo.trace_id, backend.failed.trace_id, backend.ok.trace_id]
    assert page.locator("a.older").count() == 0
    page.goto(backend.url + "/?cursor=not-a-cursor")
    assert "out of date" in page.inner_text(".note")


def test_state_changing_forms_refuse_other_sites_and_missing_tokens(backend: Backend) -> None:
    with requests.Session() as http:
        http.get(backend.url + "/signin")
        token = http.cookies["agenttrace_csrf"]
        form = {"api_key": KEY, "csrf": token, "next": "/"}
        for headers, data in (
            ({"Origin": "http://evil.example"}, form),
            ({"Sec-Fetch-Site": "cross-site"}, form),
            ({}, {**form, "csrf": "wrong"}),
            ({}, {"api_key": KEY}),
        ):
            refused = http.post(
                backend.url + "/signin", data=data, headers=headers, allow_redirects=False
            )
            assert refused.status_code == 403, (headers, data)
            assert "agenttrace_session" not in refused.headers.get("set-cookie", "")
        signed = http.post(
            backend.url + "/signin",
            data={**form, "next": "//evil.example/x"},
            headers={"Origin": backend.url},
            allow_redirects=False,
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        session = http.cookies["agenttrace_session"]
        assert http.get(backend.url + "/").status_code == 200
        # A forged or altered session is no session.
        project, expires, mac = session.split(".")
        for forged in (f"{project}.{int(expires) + 1}.{mac}", f"{project}.{expires}.{'0' * 64}"):
            http.cookies.set("agenttrace_session", forged)
            assert http.get(backend.url + "/", allow_redirects=False).status_code == 303
        http.cookies.set("agenttrace_session", session)
        out = http.post(backend.url + "/signout", data={"csrf": "wrong"}, allow_redirects=False)
        assert out.status_code == 403
        out = http.post(backend.url + "/signout", data={"csrf": token}, allow_redirects=False)
        assert out.status_code == 303 and 'agenttrace_session=""' in out.headers["set-cookie"]


# -- agenttrace view ------------------------------------------------------------------------------


@contextlib.contextmanager
def _view(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """A running `agenttrace view ARGS`; yields the URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agenttrace.cli", "view", *args],
        cwd=cwd,
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.ConnectionError):
                requests.get(url, timeout=2)
                break
            assert time.monotonic() < deadline and proc.poll() is None, "view did not start"
            time.sleep(0.05)
        yield url
    finally:
        stop(proc, signal.SIGINT)


@pytest.fixture(scope="module")
def local_store(module_llm_server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A local store with a recording of AGENT, its replay and a corrupt trace file."""
    workdir = tmp_path_factory.mktemp("viewer-local")
    run = record(workdir, module_llm_server.url)
    store = workdir / ".agenttrace"
    run.trace_id = json.loads((store / "last.json").read_text(encoding="utf-8"))["trace_id"]
    replayed = run_python(
        AGENT,
        env={
            "URL": module_llm_server.url,
            "PAYLOAD": PAYLOAD,
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(store / "last.json"),
        },
        cwd=workdir,
    )
    assert replayed.returncode == 0, replayed.stderr
    (store / "traces" / ("0" * 32 + ".json")).write_text('{"format": "agenttrace.trace/1", "ev')
    return run


def test_agenttrace_view_serves_the_local_store(page: Any, local_store: Run) -> None:
    with _view("--no-browser", cwd=local_store.workdir) as url:
        assert url.endswith("/")
        page.goto(url)
        rows = page.locator("table.runs tbody tr.run")
        assert rows.count() == 2  # the recording and its replay
        assert page.locator("table.runs .tag", has_text="replay").count() == 1
        assert "0" * 32 in page.inner_text(".note") and "truncated" in page.inner_text(".note")
        assert page.locator("form.signout").count() == 0  # no key, no sign-in
        page.click(f"tr[data-run='{local_store.trace_id}'] a.run-link")
        page.locator("a.event-link", has_text="/weather").click()
        page.wait_for_selector("#pane .event-detail mark.redacted")
        screenshots = local_store.workdir / ".agenttrace"
        page.screenshot(path=str(screenshots / "viewer-local-run.png"), full_page=True)
        # Compare the recording with its replay: equivalent.
        page.locator("form.compare button").click()
        assert "Equivalent" in page.inner_text(".verdict")
        corrupt = page.goto(f"{url}runs/{'0' * 32}")
        assert corrupt.status == 422 and "cannot be read" in page.inner_text("h1")
        # Another name for this machine is refused (DNS rebinding).
        rebound = requests.get(url, headers={"Host": "attacker.example"}, timeout=5)
        assert rebound.status_code == 400


def test_agenttrace_view_of_one_file_opens_that_run(page: Any, local_store: Run) -> None:
    trace = local_store.workdir / ".agenttrace" / "traces" / f"{local_store.trace_id}.json"
    with _view(str(trace), "--no-browser", cwd=local_store.workdir) as url:
        assert url.endswith(f"/runs/{local_store.trace_id}")
        page.goto(url)
        assert page.locator("table.waterfall tr.step").count() == 4
        assert page.locator("h1").inner_text().startswith("viewer_agent")


def test_agenttrace_view_opens_the_browser_only_on_a_desktop(
    local_store: Run, tmp_path: Path
) -> None:
    opened = tmp_path / "opened.txt"
    fake = tmp_path / "browser.py"
    fake.write_text(
        f"import sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n", encoding="utf-8"
    )
    browser = f"{sys.executable} {fake} %s"
    desktop = {"DISPLAY": ":0", "BROWSER": browser}
    with _view(cwd=local_store.workdir, env=desktop) as url:
        deadline = time.monotonic() + 20
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert opened.read_text(encoding="utf-8") == url
    opened.unlink()
    headless = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    headless["BROWSER"] = browser
    with _view(cwd=local_store.workdir, env=headless):
        pass
    with _view("--no-browser", cwd=local_store.workdir, env=desktop):
        pass
    assert not opened.exists()


def test_agenttrace_view_says_what_is_missing(tmp_path: Path) -> None:
    from conftest import cli

    nothing = cli("view", "--no-browser", cwd=tmp_path)
    assert nothing.returncode == 2
    assert ".agenttrace: no such file or directory; record a run first" in nothing.stderr
    missing = cli("view", str(tmp_path / "nope.json"), cwd=tmp_path)
    assert missing.returncode == 2 and "nope.json: no such file" in missing.stderr
    helped = cli("view", "--help")
    assert "--no-browser" in helped.stdout and "127.0.0.1" in helped.stdout
