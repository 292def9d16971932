"""State shared by the scenarios of one run: the plan, work directory, results and failures."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.plan import Plan


@dataclass
class Run:
    plan: Plan
    workdir: Path
    aws_python: Path | None = None
    results: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def contenders(self) -> list[str]:
        return [c for c in self.plan.contenders if c != "aws" or self.aws_python is not None]

    def order(self, round_index: int) -> list[str]:
        """Round 0: A B C; round 1: C B A; and so on, so machine noise hits each contender alike."""
        names = self.contenders()
        return names if round_index % 2 == 0 else names[::-1]

    def say(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    def fail(self, message: str) -> None:
        self.failures.append(message)
        self.say(f"FAILED: {message[:2000]}")

    def add(self, section: str, record: dict[str, Any]) -> None:
        self.results.setdefault(section, []).append(record)

    def workers(self) -> int:
        return os.cpu_count() or 1

    @staticmethod
    def available_mb() -> float:
        return psutil.virtual_memory().available / (1024 * 1024)
