"""Reliability layer: decode bombs in child processes (peak RSS reported) and codec fuzzing.

Peak-RSS figures collected by the bomb tests are printed in the terminal summary.
"""

from __future__ import annotations

from typing import Any

import pytest

#: (bomb name, status, peak RSS growth in MiB) per bomb test that ran.
BOMB_REPORT: list[tuple[str, int, float]] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not BOMB_REPORT:
        return
    terminalreporter.section("decode bombs: status and worker peak RSS growth")
    for name, status, growth in BOMB_REPORT:
        terminalreporter.write_line(f"{name:32} {status}  {growth:7.1f} MiB")


@pytest.fixture(scope="session")
def bomb_report() -> list[tuple[str, int, float]]:
    return BOMB_REPORT
