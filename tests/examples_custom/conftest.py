"""Fixtures for the custom-framework example (ONNX Runtime, examples/custom_framework/).

The example's modules (``onnx_handler``, ``train_onnx``) are importable from the example directory,
as they are inside the example image (``PYTHONPATH=/opt/servekit-handlers``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "custom_framework"
#: What a user writes in SERVE_FRAMEWORK for the example handler.
FRAMEWORK = "onnx_handler:OnnxHandler"


def _require_onnx() -> None:
    # Not a silent skip: the example's tests need the onnx extra and say how to get it; in CI
    # (SERVEKIT_REQUIRE_DOCKER=1: every layer must run) a missing extra is a failure.
    missing = [name for name in ("onnxruntime", "skl2onnx", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        message = f"CUSTOM FRAMEWORK TESTS NOT RUN: {', '.join(missing)} missing: pip install -e '.[onnx]'"
        if os.environ.get("SERVEKIT_REQUIRE_DOCKER") == "1":
            pytest.fail(message + " (SERVEKIT_REQUIRE_DOCKER=1 demands every test layer)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def example_path() -> Iterator[Path]:
    """The example directory, first on ``sys.path`` for the session (so ``import onnx_handler`` works)."""
    _require_onnx()
    sys.path.insert(0, str(EXAMPLE_DIR))
    try:
        yield EXAMPLE_DIR
    finally:
        sys.path.remove(str(EXAMPLE_DIR))


@pytest.fixture(scope="session")
def train_onnx(example_path: Path) -> Any:
    """The example's training module."""
    import train_onnx

    return train_onnx


@pytest.fixture(scope="session")
def classifier(train_onnx: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An iris classifier (scaler + logistic regression) as ``model.onnx`` and ``model.tar.gz``."""
    return train_onnx.build_artifact(tmp_path_factory.mktemp("onnx-classifier"), "classifier", seed=0)


@pytest.fixture(scope="session")
def regressor(train_onnx: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A gradient-boosting regressor (one output ``variable`` of shape [None, 1])."""
    return train_onnx.build_artifact(tmp_path_factory.mktemp("onnx-regressor"), "regressor", seed=3)
