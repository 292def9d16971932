"""The shape of harness/: no import circle between its modules, and no function a reader must scroll."""

from __future__ import annotations

import ast
from pathlib import Path

from harness.container_client import OutgoingRequest
from harness.metrics import UNITS, Metrics
from tests.support.import_graph import import_cycle, import_graph, package_modules

PACKAGE = Path(__file__).resolve().parents[2] / "harness"
LONGEST_FUNCTION = 60


def test_harness_modules_import_each_other_without_a_circle():
    graph = import_graph(PACKAGE)
    assert import_cycle(graph) is None, " -> ".join(import_cycle(graph) or [])


def test_no_function_in_harness_reaches_60_lines():
    sizes = {
        f"{name}.{node.name}": node.end_lineno - node.lineno + 1
        for name, tree in package_modules(PACKAGE).items()
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
