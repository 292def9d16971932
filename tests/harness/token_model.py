"""A tiny PyTorch token generator trained in the test (a character bigram table, well under a second on
a CPU) and packed as a model.tar.gz whose user script streams its tokens (stream_lm/inference.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.harness.conftest import tar_dir

SCRIPT_DIR = Path(__file__).with_name("stream_lm")
TEXT = "the quick brown fox jumps over the lazy dog. "
#: The request every streaming test sends, and the environment that points serve at the script.
REQUEST = {"prompt": "t", "max_new_tokens": 24}
ENVIRONMENT = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}


def user_script() -> ModuleType:
    """stream_lm/inference.py imported here, to train its model class and compute the expected tokens."""
    spec = importlib.util.spec_from_file_location("stream_lm_inference", SCRIPT_DIR / "inference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(directory: Path) -> Path:
    """Train the bigram model on TEXT and write model.pth, vocab.json and code/inference.py."""
    import torch

    script = user_script()
    vocab = sorted(set(TEXT))
    ids = torch.tensor([vocab.index(c) for c in TEXT])
    torch.manual_seed(0)
    model = script.BigramLM(len(vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(150):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(ids[:-1]), ids[1:])
        loss.backward()
        optimizer.step()
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / "model.pth")
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "code").mkdir(exist_ok=True)
    (directory / "code" / "inference.py").write_text((SCRIPT_DIR / "inference.py").read_text())
    return directory


def artifact(directory: Path) -> Path:
    """model.tar.gz of a freshly trained model, next to ``directory``."""
    return tar_dir(train(directory), directory.with_suffix(".tar.gz"))


def expected_tokens(directory: Path, request: dict[str, Any] = REQUEST) -> list[str]:
    """What the script answers, computed here with the trained model."""
    script = user_script()
    model = script.model_fn(str(directory))
    return list(script.predict_fn(script.input_fn(json.dumps(request), "application/json"), model))
