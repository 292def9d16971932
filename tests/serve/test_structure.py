"""The shape of serve/: imports between its modules run one way, with no circle.

docs/architecture.md ("serve/: the container") draws the direction: the front's routes
(``serve.app``) use the engine's registry (``serve.engine``), which starts the workers
(``serve.worker``); a prefork worker (``serve.prefork``) serves the front's routes, so it sits above
them, and the engine is handed its entry point (``serve.engine.Prefork``) rather than importing it.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.import_graph import import_cycle, import_graph

PACKAGE = Path(__file__).resolve().parents[2] / "serve"


def test_serve_modules_import_each_other_without_a_circle():
    graph = import_graph(PACKAGE)
    assert import_cycle(graph) is None, " -> ".join(import_cycle(graph) or [])


def test_imports_run_from_the_routes_to_the_registry_to_the_worker():
    graph = import_graph(PACKAGE)
    assert {"serve.engine"} <= graph["serve.app"]
    assert {"serve.worker"} <= graph["serve.engine"]
    assert {"serve.app", "serve.worker"} <= graph["serve.prefork"]
