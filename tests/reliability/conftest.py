"""Reliability layer: decode bombs in child processes (peak RSS reported), fuzzing, faults and soak.

The figures the README's Reliability section quotes are printed in the terminal summary: the bombs'
statuses and worker peak RSS growth, the archives the extractor fuzzing tried, and what the soak,
interleaving, liveness and memory-limit tests measured.

``SERVEKIT_RELIABILITY_LONG=1`` selects the long forms: fuzzing with 2000-5000 random examples per
test, a 10-minute soak instead of 1 minute, longer interleavings.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import pytest

#: True when the long forms run (SERVEKIT_RELIABILITY_LONG=1).
LONG = os.environ.get("SERVEKIT_RELIABILITY_LONG") == "1"

#: (bomb name, status, peak RSS growth in MiB) per bomb test that ran.
BOMB_REPORT: list[tuple[str, int, float]] = []
#: extractor -> {"extracted": n, "refused": n}: what the archive fuzzing tried.
ARCHIVE_REPORT: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
#: section title -> lines, in the order the tests ran (soak, interleavings, liveness, memory limit).
FIGURES: dict[str, list[str]] = {}


def report(section: str, line: str) -> None:
    """Add ``line`` to the terminal summary under ``section`` (and print it, for -s runs)."""
    FIGURES.setdefault(section, []).append(line)
    print(f"[{section}] {line}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if BOMB_REPORT:
        terminalreporter.section("decode bombs: status and worker peak RSS growth")
        for name, status, growth in BOMB_REPORT:
            terminalreporter.write_line(f"{name:32} {status}  {growth:7.1f} MiB")
    if ARCHIVE_REPORT:
        terminalreporter.section("model archive fuzzing: hostile archives tried")
        for extractor, counts in ARCHIVE_REPORT.items():
            others = ", ".join(f"{n} {what}" for what, n in counts.items() if what not in ("extracted", "refused"))
            terminalreporter.write_line(
                f"{extractor:26} {sum(counts.values()):5} tried: {counts['refused']:5} refused with the typed "
                f"error, {counts['extracted']:4} extracted inside the target, 0 writes outside"
                + (f"; {others}" if others else "; no other exception"))
    for section, lines in FIGURES.items():
        terminalreporter.section(section)
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def bomb_report() -> list[tuple[str, int, float]]:
    return BOMB_REPORT
