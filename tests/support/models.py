"""Tiny real model artifacts for server and harness tests, trained in the test (no downloads)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SklearnArtifact:
    """An extracted scikit-learn artifact directory and what the model answers for ``rows``."""

    path: Path
    rows: np.ndarray
    expected: list[float]


def sklearn_artifact(directory: Path, seed: int = 0, code: str | None = None) -> SklearnArtifact:
    """Train a LogisticRegression on iris (seeded subsample) and save it as ``model.joblib``.

    ``code`` becomes ``code/inference.py`` when given.
    """
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(features), size=120, replace=False)
    model = LogisticRegression(max_iter=500).fit(features[picked], labels[picked])
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "model.joblib")
    if code is not None:
        write_script(directory, code)
    rows = features[[0, 60, 120, 7]]
    return SklearnArtifact(directory, rows, model.predict(rows).astype(float).tolist())


def write_script(directory: Path, code: str, name: str = "inference.py") -> Path:
    """Write a user script into ``<directory>/code/``."""
    (directory / "code").mkdir(parents=True, exist_ok=True)
    path = directory / "code" / name
    path.write_text(textwrap.dedent(code))
    return path


#: A user script whose model sleeps for the number of seconds in the request (JSON {"sleep": s}) and
#: records its PID first, so tests can act on a worker while it is busy.
SLOW_SCRIPT = """
import json, os, time

def model_fn(model_dir):
    return {"dir": model_dir}

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    if data.get("pid_file"):
        with open(data["pid_file"], "w") as handle:
            handle.write(str(os.getpid()))
    time.sleep(float(data.get("sleep", 0)))
    return {"pid": os.getpid(), "slept": data.get("sleep", 0)}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""

#: A predict_fn that blocks SIGALRM first, as code inside a C call is out of its reach.
UNREACHABLE_SCRIPT = SLOW_SCRIPT.replace(
    "    time.sleep(float(data.get(\"sleep\", 0)))",
    "    import signal\n"
    "    if data.get(\"block_alarm\"):\n"
    "        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n"
    "    time.sleep(float(data.get(\"sleep\", 0)))",
)

#: A user script that echoes what SageMaker forwards through the context and sets Custom-Attributes.
ECHO_SCRIPT = """
import json

def model_fn(model_dir):
    return "echo"

def transform_fn(model, body, content_type, accept, context):
    attributes = context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes")
    target = context.get_request_header(0, "X-Amzn-SageMaker-Target-Model")
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "seen=" + str(attributes))
    answer = {"custom_attributes": attributes, "target_model": target, "tag": TAG}
    return json.dumps(answer), "application/json"
"""


def echo_script(tag: str) -> str:
    """ECHO_SCRIPT with a module-level TAG, so two models' scripts are told apart."""
    return f"TAG = {tag!r}\n" + textwrap.dedent(ECHO_SCRIPT)


#: model_fn raises: the artifact cannot be loaded.
BROKEN_SCRIPT = """
def model_fn(model_dir):
    raise RuntimeError("weights file is corrupt")
"""


@dataclass(frozen=True)
class TensorArtifact:
    """An extracted PyTorch or TensorFlow artifact and its in-process predictions for ``rows``."""

    path: Path
    rows: list[list[float]]
    expected: list[list[float]]


ROWS = [[0.5, -1.0, 2.0, 0.25], [1.5, 0.0, -0.5, 3.0]]


def torch_artifact(directory: Path, seed: int = 0) -> TensorArtifact:
    """A TorchScript ``model.pt``: a seeded Linear(4, 3) + softmax."""
    import torch

    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1)).eval()
    directory.mkdir(parents=True, exist_ok=True)
    torch.jit.script(module).save(str(directory / "model.pt"))
    with torch.inference_mode():
        expected = module(torch.tensor(ROWS, dtype=torch.float32)).tolist()
    return TensorArtifact(directory, ROWS, expected)


def tensorflow_artifact(directory: Path, seed: int = 0) -> TensorArtifact:
    """A SavedModel under version directory ``1/`` (TF Serving's layout): Dense(3, softmax) on 4 inputs."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3, activation="softmax")])
    directory.mkdir(parents=True, exist_ok=True)
    model.export(str(directory / "1"), verbose=False)
    expected = model.predict(np.array(ROWS, dtype="float32"), verbose=0).tolist()
    return TensorArtifact(directory, ROWS, expected)
