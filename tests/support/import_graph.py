"""One package's modules and the imports between them, read with ``ast`` (nothing is imported), for the
structure tests of harness/ and serve/ (docs/architecture.md: imports run one way)."""

from __future__ import annotations

import ast
from pathlib import Path


def package_modules(package: Path) -> dict[str, ast.Module]:
    """Every module under ``package`` by its dotted name, parsed."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = ast.parse(path.read_text())
    return modules


def imported_modules(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The ``known`` modules ``name`` imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found.update(submodules if len(submodules) == len(node.names) else {node.module, *submodules})
    # A submodule loads its parent package anyway; that edge says nothing about the layering.
    return {m for m in found & known if m != name and not name.startswith(m + ".")}


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports."""
    modules = package_modules(package)
    return {name: imported_modules(name, tree, set(modules)) for name, tree in modules.items()}


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it started, or None."""
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
