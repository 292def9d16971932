"""The shape of harness/: no import circle between its modules, and no function a reader must scroll."""

from __future__ import annotations

import ast
from pathlib import Path

from harness.container_client import OutgoingRequest
from harness.metrics import UNITS, Metrics

PACKAGE = Path(__file__).resolve().parents[2] / "harness"
LONGEST_FUNCTION = 60


def _modules() -> dict[str, ast.Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = ast.parse(path.read_text())
    return modules


def _imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """Harness modules ``name`` imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found.update(submodules if len(submodules) == len(node.names) else {node.module, *submodules})
    # A submodule loads its parent package anyway; that edge says nothing about the layering.
    return {m for m in found & known if m != name and not name.startswith(m + ".")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            found = visit(imported, path + [module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def test_harness_modules_import_each_other_without_a_circle():
    modules = _modules()
    graph = {name: _imports(name, tree, set(modules)) for name, tree in modules.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_function_in_harness_reaches_60_lines():
    sizes = {
        f"{name}.{node.name}": node.end_lineno - node.lineno + 1
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None
    }
    too_long = {function: size for function, size in sizes.items() if size >= LONGEST_FUNCTION}
    assert not too_long


def test_absent_request_members_send_no_header():
    request = OutgoingRequest(body=b"x", content_type="text/csv", custom_attributes="a=1")
    assert request.headers() == {"Content-Type": "text/csv", "X-Amzn-SageMaker-Custom-Attributes": "a=1"}


def test_every_metric_reports_its_cloudwatch_unit():
    metrics = Metrics()
    for name in UNITS:
        metrics.record("ep", "AllTraffic", name, 1.0)
    reported = metrics.snapshot("ep")["AllTraffic"]["metrics"]
    assert {name: stats["Unit"] for name, stats in reported.items()} == UNITS
