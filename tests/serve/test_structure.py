"""The shape of serve/: imports between its modules run one way, with no circle.

docs/architecture.md ("serve/: the container") draws the direction: the front's routes
(``serve.app``) use the engine's registry (``serve.engine``), which starts the workers
(``serve.worker``); a prefork worker (``serve.prefork``) serves the front's routes, so it sits above
them, and the engine is handed its entry point (``serve.engine.Prefork``) rather than importing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "serve"


def _modules() -> dict[str, ast.Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = ast.parse(path.read_text())
    return modules


def _imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """serve modules ``name`` imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found.update(submodules if len(submodules) == len(node.names) else {node.module, *submodules})
    # A submodule loads its parent package anyway; that edge says nothing about the layering.
    return {m for m in found & known if m != name and not name.startswith(m + ".")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, tree, set(modules)) for name, tree in modules.items()}


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


def test_serve_modules_import_each_other_without_a_circle():
    graph = _graph()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_imports_run_from_the_routes_to_the_registry_to_the_worker():
    graph = _graph()
    assert {"serve.engine"} <= graph["serve.app"]
    assert {"serve.worker"} <= graph["serve.engine"]
    assert {"serve.app", "serve.worker"} <= graph["serve.prefork"]
