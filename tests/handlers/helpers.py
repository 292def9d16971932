"""Shared helpers for handler tests: artifact directories, user scripts, a tiny framework-free handler."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from handlers.base import Handler, HandlerOptions, Request
from handlers.errors import ModelLoadError


class ScaleHandler(Handler):
    """A framework-free handler: ``scale.json`` holds a factor; predict multiplies the input by it."""

    name = "scale"

    def load(self, model_dir: str) -> Any:
        path = Path(model_dir) / "scale.json"
        if not path.is_file():
            raise ModelLoadError(f"{path} not found")
        return json.loads(path.read_text())["factor"]

    def predict(self, model: Any, data: Any) -> Any:
        return np.asarray(data, dtype=float) * model


def write(path: Path, text: str) -> Path:
    """Write dedented ``text`` to ``path`` (creating parents)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def scale_dir(tmp_path: Path) -> Path:
    """An artifact for ScaleHandler with factor 2 and no user code."""
    model_dir = tmp_path / "model"
    write(model_dir / "scale.json", '{"factor": 2}')
    return model_dir


def make_handler(**options: Any) -> ScaleHandler:
    return ScaleHandler(HandlerOptions(**options))


def req(
    body: bytes | str, content_type: str | None = "application/json", accept: str | None = None, **kw: Any
) -> Request:
    """A Request with str bodies encoded as UTF-8."""
    data = body.encode() if isinstance(body, str) else body
    return Request(body=data, content_type=content_type, accept=accept, **kw)


def assert_clean(message: str) -> None:
    """A user-facing message: one line, no traceback."""
    assert "Traceback" not in message
    assert 'File "' not in message
    assert "\n" not in message
