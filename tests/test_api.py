"""The run/step API, the local store and exit behaviour, each in a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_python


def load(workdir: Path, name: str = "last.json") -> dict:
    return json.loads((workdir / ".agenttrace" / name).read_text())


def spans_by_name(doc: dict) -> dict[str, dict]:
    return {s["name"]: s for s in doc["spans"]}


def test_steps_nest_across_threads_and_asyncio_tasks(tmp_path, llm_server):
    result = run_python(
        """
        import asyncio, os, threading
        from concurrent.futures import ThreadPoolExecutor
        import agenttrace, httpx2

        URL = os.environ["URL"]
        agenttrace.init()

        @agenttrace.step("in_pool", type="tool_call")
        def in_pool():
            return httpx2.get(URL + "/weather?city=Paris").status_code

        def in_thread():
            with agenttrace.step("in_thread"):
                httpx2.get(URL + "/weather?city=Oslo")

        async def task(city):
            with agenttrace.step(f"task_{city}"):
                async with httpx2.AsyncClient() as client:
                    await client.get(URL + f"/weather?city={city}")

        @agenttrace.run(name="nesting")
        def main():
            with agenttrace.step("outer", type="thought", input={"goal": "nest"}):
                with ThreadPoolExecutor(2) as pool:
                    assert pool.submit(in_pool).result() == 200
                t = threading.Thread(target=in_thread)
                t.start(); t.join()
                async def both():
                    await asyncio.gather(task("Rome"), task("Lima"))
                asyncio.run(both())
                agenttrace.set_result({"ok": True})

        main()
        """,
        env={"URL": llm_server.url},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    doc = load(tmp_path)
    spans = spans_by_name(doc)
    assert doc["run"]["name"] == "nesting" and doc["run"]["status"] == "ok"
    outer = spans["outer"]
    assert outer["parent_id"] == spans["nesting"]["span_id"]
    assert json.loads(outer["attributes"]["agenttrace.step.result"]) == {"ok": True}
    assert json.loads(outer["attributes"]["agenttrace.step.input"]) == {"goal": "nest"}
    for child in ("in_pool", "in_thread", "task_Rome", "task_Lima"):
        assert spans[child]["parent_id"] == outer["span_id"], child
    http = [e for e in doc["events"] if e["kind"] == "http"]
    assert sorted(e["step"] for e in http) == ["in_pool", "in_thread", "task_Lima", "task_Rome"]
    span_parent = {s["span_id"]: s["parent_id"] for s in doc["spans"]}
    for event in http:
        assert span_parent[event["span_id"]] == spans[event["step"]]["span_id"]
    assert [e["seq"] for e in doc["events"]] == sorted(e["seq"] for e in doc["events"])


def test_decorators_for_every_kind_of_function(tmp_path):
    result = run_python(
        """
        import asyncio
        import agenttrace
        agenttrace.init()

        @agenttrace.step("sync")
        def f(x):
            agenttrace.set_result(x * 2)
            return x * 2

        @agenttrace.step("async")
        async def af(x):
            await asyncio.sleep(0)
            agenttrace.set_result(x + 1)
            return x + 1

        @agenttrace.step("gen")
        def g(n):
            for i in range(n):
                with agenttrace.step(f"gen_item_{i}"):
                    pass
                yield i

        @agenttrace.step("agen")
        async def ag(n):
            for i in range(n):
                yield i

        @agenttrace.run(name="kinds")
        async def main():
            assert f(2) == 4
            assert await af(1) == 2
            assert list(g(2)) == [0, 1]
            assert [i async for i in ag(3)] == [0, 1, 2]
            print("done")

        asyncio.run(main())
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    spans = spans_by_name(load(tmp_path))
    root = spans["kinds"]["span_id"]
    for name in ("sync", "async", "gen", "agen"):
        assert spans[name]["parent_id"] == root
    assert spans["gen_item_1"]["parent_id"] == spans["gen"]["span_id"]
    assert spans["sync"]["attributes"]["agenttrace.step.result"] == "4"
    assert spans["async"]["attributes"]["agenttrace.step.result"] == "2"


def test_uncaught_exception_keeps_traceback_and_status_and_writes_last_failure(tmp_path):
    result = run_python(
        """
        import agenttrace
        agenttrace.init()
        with agenttrace.step("doomed"):
            raise RuntimeError("tool exploded")
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: tool exploded" in result.stderr
    failure = load(tmp_path, "last-failure.json")
    assert failure["run"]["status"] == "error"
    assert "tool exploded" in failure["run"]["error"]
    assert load(tmp_path) == failure
    assert (tmp_path / ".agenttrace" / "traces" / f"{failure['trace_id']}.json").exists()
    assert "last-failure.json" in result.stderr.splitlines()[-1]


def test_non_zero_exit_is_a_failed_run_with_the_same_status(tmp_path):
    result = run_python(
        """
        import sys, agenttrace
        agenttrace.init()
        with agenttrace.step("checking"):
            pass
        sys.exit(3)
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 3
    assert load(tmp_path, "last-failure.json")["run"]["status"] == "error"


def test_successful_run_writes_last_but_not_last_failure_and_says_where(tmp_path):
    result = run_python(
        """
        import agenttrace
        agenttrace.init()
        with agenttrace.step("fine"):
            pass
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    doc = load(tmp_path)
    assert doc["format"] == "agenttrace.trace/1"
    assert doc["run"]["status"] == "ok"
    assert not (tmp_path / ".agenttrace" / "last-failure.json").exists()
    lines = [line for line in result.stderr.splitlines() if line.startswith("agenttrace:")]
    assert len(lines) == 1
    assert f"traces/{doc['trace_id']}.json" in lines[0]


def test_run_decorator_marks_error_and_reraises(tmp_path):
    result = run_python(
        """
        import agenttrace
        agenttrace.init()

        @agenttrace.run(name="failing")
        def main():
            raise ValueError("bad plan")

        try:
            main()
        except ValueError as exc:
            print("caught", exc)
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "caught bad plan\n"
    doc = load(tmp_path, "last-failure.json")
    assert doc["run"]["name"] == "failing"
    assert "ValueError: bad plan" in doc["run"]["error"]


def test_init_is_idempotent_and_warns_once_about_ignored_arguments(tmp_path):
    result = run_python(
        """
        import agenttrace
        first = agenttrace.init(governance_level="relaxed")
        again = agenttrace.init()
        other = agenttrace.init(governance_level="governance")
        agenttrace.init(governance_level="governance")
        assert first is again is other is agenttrace.get_settings()
        print(other.governance_level)
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "relaxed\n"
    assert result.stderr.count("already called") == 1
    assert "ignored: governance_level" in result.stderr


def test_an_app_with_its_own_tracer_provider_keeps_it(tmp_path, llm_server):
    result = run_python(
        """
        import os
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

        import agenttrace, httpx2
        agenttrace.init()
        assert trace.get_tracer_provider() is provider
        with trace.get_tracer("app").start_as_current_span("app-request"):
            with agenttrace.step("lookup"):
                httpx2.get(os.environ["URL"] + "/weather?city=Paris")
        agenttrace.shutdown()
        names = sorted(s.name for s in exporter.get_finished_spans())
        print(names)
        """,
        env={"URL": llm_server.url},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Overriding" not in result.stderr
    names = eval(result.stdout)  # noqa: S307 - our own subprocess output
    assert names.count("app-request") == 1
    assert names.count("lookup") == 1 and names.count("GET") == 1


def test_implicit_run_is_named_after_the_script(tmp_path, llm_server):
    result = run_python(
        """
        import os, agenttrace, requests
        agenttrace.init()
        requests.get(os.environ["URL"] + "/weather?city=Oslo")
        """,
        env={"URL": llm_server.url},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    doc = load(tmp_path)
    assert doc["run"]["name"] == "script"
    assert [e["request"]["url"] for e in doc["events"] if e["kind"] == "http"] == [
        llm_server.url + "/weather?city=Oslo"
    ]


def test_a_failing_step_of_every_kind_is_marked_error_and_reraises(tmp_path):
    result = run_python(
        """
        import asyncio
        import agenttrace
        agenttrace.init()

        @agenttrace.step("sync")
        def f():
            raise KeyError("k")

        @agenttrace.step("async")
        async def af():
            raise ValueError("v")

        @agenttrace.step("gen")
        def g():
            yield 1
            raise RuntimeError("r")

        @agenttrace.step("agen")
        async def ag():
            yield 1
            raise TypeError("t")

        async def main():
            for call in (f, lambda: list(g())):
                try:
                    call()
                except Exception as exc:
                    print(type(exc).__name__)
            try:
                await af()
            except ValueError:
                print("ValueError")
            try:
                [i async for i in ag()]
            except TypeError:
                print("TypeError")

        asyncio.run(main())
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["KeyError", "RuntimeError", "ValueError", "TypeError"]
    spans = spans_by_name(load(tmp_path))
    for name, message in (
        ("sync", "KeyError"),
        ("async", "ValueError"),
        ("gen", "RuntimeError"),
        ("agen", "TypeError"),
    ):
        assert spans[name]["status"] == "error", name
        assert message in spans[name]["status_message"]


def test_bare_decorators_and_one_step_object_shared_by_threads(tmp_path):
    result = run_python(
        """
        import threading
        import agenttrace
        agenttrace.init()
        SHARED = agenttrace.step("shared", type="tool_call")

        @agenttrace.step
        def helper():
            return 1

        def worker(barrier):
            with SHARED:
                barrier.wait()  # both threads are inside the same step object at once
                helper()

        @agenttrace.run
        def main_agent():
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=worker, args=(barrier,)) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        main_agent()
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    doc = load(tmp_path)
    assert doc["run"]["name"] == "main_agent"
    shared = [s for s in doc["spans"] if s["name"] == "shared"]
    helpers = [s for s in doc["spans"] if s["name"] == "helper"]
    assert len(shared) == 2 and len(helpers) == 2
    assert all(s["end"] for s in shared)
    assert sorted(h["parent_id"] for h in helpers) == sorted(s["span_id"] for s in shared)


def test_a_process_that_recorded_nothing_still_writes_its_run(tmp_path):
    result = run_python("import agenttrace\nagenttrace.init()\nprint('quiet')\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = load(tmp_path)
    assert doc["run"]["name"] == "script" and doc["events"] == []


def test_an_explicit_run_is_not_followed_by_an_empty_implicit_trace(tmp_path):
    result = run_python(
        """
        import agenttrace
        agenttrace.init()
        with agenttrace.run("only"):
            pass
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert load(tmp_path)["run"]["name"] == "only"
    assert len(list((tmp_path / ".agenttrace" / "traces").iterdir())) == 1
