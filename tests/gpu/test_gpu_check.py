"""The GPU check script itself, on a machine without a GPU: it must refuse in one line, never pass.

The check's real run needs an NVIDIA GPU (``python -m tests.gpu.gpu_check``; docs/images.md, "GPU
images"); it is not part of the test suite.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.gpu.gpu_check import gpu_names
from tests.images.conftest import REPO


def test_without_a_gpu_the_check_fails_in_one_line() -> None:
    if gpu_names():
        pytest.skip("A GPU IS VISIBLE HERE: run `python -m tests.gpu.gpu_check` itself instead of this test")
    result = subprocess.run([sys.executable, "-m", "tests.gpu.gpu_check"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("gpu_check: FAILED: no GPU visible"), lines[0]
    assert "PASSED" not in result.stdout


def test_an_unknown_framework_is_misuse() -> None:
    result = subprocess.run([sys.executable, "-m", "tests.gpu.gpu_check", "--frameworks", "sklearn"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "unknown framework" in result.stdout
