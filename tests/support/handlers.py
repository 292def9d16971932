"""A custom framework handler for tests: what a team bringing its own framework writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from handlers.base import Handler
from handlers.errors import ModelLoadError


class ScaleHandler(Handler):
    """Multiplies the input by the ``scale`` in ``scale.json``; declares forking unsafe."""

    name: ClassVar[str] = "scale"
    fork_safe: ClassVar[bool] = False

    def load(self, model_dir: str) -> Any:
        path = Path(model_dir) / "scale.json"
        if not path.is_file():
            raise ModelLoadError(f"model artifact {model_dir} has no scale.json")
        return float(json.loads(path.read_text())["scale"])

    def predict(self, model: Any, data: Any) -> Any:
        return np.asarray(data, dtype=float) * model
