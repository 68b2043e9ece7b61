"""The shape of the package, held in place: no import circles, a pinned public surface.

The import graph is read from the source (ast), counting imports inside functions (only
``TYPE_CHECKING`` blocks are left out), so a function-level import cannot hide a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import agenttrace.exporters
import agenttrace.instrumentors

import agenttrace

ROOT = Path(__file__).resolve().parent.parent
# Where each part of the installed package lives in the repository (setuptools package-dir).
PACKAGES = {
    "agenttrace": ROOT / "agenttrace",
    "agenttrace.instrumentors": ROOT / "instrumentors",
    "agenttrace.exporters": ROOT / "exporters",
}


def _modules() -> dict[str, tuple[Path, bool]]:
    """module name -> (file, is a package's __init__)."""
    found: dict[str, tuple[Path, bool]] = {}
    for package, directory in PACKAGES.items():
        for path in directory.rglob("*.py"):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            if package == "agenttrace" and parts and parts[0] in ("instrumentors", "exporters"):
                continue
            is_init = parts[-1] == "__init__"
            if is_init:
                parts = parts[:-1]
            found[".".join([package, *parts])] = (path, is_init)
    return found


def _imports(tree: ast.AST) -> list[tuple[ast.AST, int]]:
    """Import nodes (and strings that may name a module), skipping ``if TYPE_CHECKING:``."""
    out: list[tuple[ast.AST, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append((node, node.lineno))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            # a module named by a dotted string (importlib.import_module, a registry such as
            # instrumentors.TARGETS) is an import too; "agenttrace" alone is the logger's name
            out.append((node, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_init) in modules.items():
        package = name if is_init else name.rpartition(".")[0]
        for node, _ in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.Constant):
                targets = [node.value]
            else:
                assert isinstance(node, ast.ImportFrom)
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_circle_among_the_packages_modules():
    graph = import_graph()
    assert len(graph) > 30  # the walk found the package (not an empty graph passing vacuously)
    assert "agenttrace.capture.exchange" in graph["agenttrace.record.recorder"]
    assert "agenttrace.instrumentors.httpx" in graph["agenttrace.instrumentors"]
    assert _cycles(graph) == []


def test_the_capture_layer_imports_nothing_above_it():
    graph = import_graph()
    above = ("agenttrace.record", "agenttrace.replay", "agenttrace.governance", "agenttrace._s")
    for name, targets in graph.items():
        if name.startswith("agenttrace.capture"):
            assert not [t for t in targets if t.startswith(above)], name


def test_redaction_imports_no_session():
    graph = import_graph()
    for name in ("agenttrace._redaction", "agenttrace._scrub_spans"):
        assert "agenttrace._session" not in _reachable(graph, name)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_a_circle_would_be_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


# -- the public surface (httpx's test_exported_members is the model) ------------------------------


def _public(module: object) -> set[str]:
    return {n for n in vars(module) if not n.startswith("_")}


def test_agenttrace_exports_exactly_the_design_api():
    assert agenttrace.__all__ == [
        "init",
        "get_settings",
        "shutdown",
        "run",
        "step",
        "set_result",
        "tool",
        "Settings",
        "ConfigError",
        "EventsFileError",
        "GovernanceViolation",
        "ReplayDivergence",
        "SandboxEscape",
    ]
    for name in agenttrace.__all__:
        assert getattr(agenttrace, name).__module__.startswith("agenttrace"), name
    # everything else public on the package is a subpackage/module, not a stray helper
    extra = {
        n
        for n in _public(agenttrace) - set(agenttrace.__all__)
        if not isinstance(getattr(agenttrace, n), type(agenttrace))
    }
    assert extra == set()


def test_instrumentors_and_exporters_public_names():
    import importlib

    assert agenttrace.instrumentors.__all__ == ["TARGETS", "instrument"]
    assert set(agenttrace.instrumentors.TARGETS) == {
        "httpx",
        "httpx2",
        "urllib3",
        "requests",
        "http.client",
        "aiohttp",
        "websockets",
        "mcp",
    }
    for implementation in set(agenttrace.instrumentors.TARGETS.values()):
        assert callable(importlib.import_module(implementation).patch), implementation
    assert agenttrace.exporters.__all__ == ["backend", "collector", "local", "spool"]
    for name in agenttrace.exporters.__all__:
        importlib.import_module(f"agenttrace.exporters.{name}")
