"""Tiny real models of each framework, trained here, saved in the layout its handler loads.

Each builder returns the artifact directory, request rows and what the model itself answers for
them (computed on the host), so a container's answer is checked against the real model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Artifact:
    """An extracted model directory, request rows, and the model's own answer for them (flattened)."""

    path: Path
    rows: list[list[float]]
    expected: list[float]


def sklearn_model(directory: Path, seed: int = 0) -> Artifact:
    """LogisticRegression on iris, saved as ``model.joblib``."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    picked = np.random.default_rng(seed).choice(len(features), size=120, replace=False)
    model = LogisticRegression(max_iter=500).fit(features[picked], labels[picked])
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "model.joblib")
    rows = features[[0, 60, 120]]
    return Artifact(directory, rows.tolist(), model.predict(rows).astype(float).tolist())


def pytorch_model(directory: Path, seed: int = 0) -> Artifact:
    """A 4 -> 3 linear layer fitted for a few steps, saved as TorchScript ``model.pt``."""
    import torch

    torch.manual_seed(seed)
    features = torch.randn(64, 4)
    target = features @ torch.randn(4, 3)
    model = torch.nn.Linear(4, 3)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(20):
        optimiser.zero_grad()
        torch.nn.functional.mse_loss(model(features), target).backward()
        optimiser.step()
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    # TorchScript is what most models written for SageMaker's PyTorch containers ship; torch
    # deprecates it (DeprecationWarning) but still saves and loads it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(directory / "model.pt"))
    rows = features[:3]
    with torch.no_grad():
        expected = model(rows).flatten().tolist()
    return Artifact(directory, rows.tolist(), [float(v) for v in expected])


def tensorflow_model(directory: Path, seed: int = 0) -> Artifact:
    """A 4 -> 2 dense layer (fixed seeded weights) exported as a SavedModel with serving_default."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    weights = tf.constant(rng.normal(size=(4, 2)).astype("float32"))
    bias = tf.constant(rng.normal(size=(2,)).astype("float32"))

    class Dense(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="inputs")])
        def __call__(self, inputs: Any) -> Any:
            return {"outputs": tf.matmul(inputs, weights) + bias}

    module = Dense()
    directory.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.__call__})
    rows = rng.normal(size=(3, 4)).astype("float32")
    expected = module(tf.constant(rows))["outputs"].numpy().flatten().tolist()
    return Artifact(directory, rows.tolist(), [float(v) for v in expected])


BUILDERS: dict[str, Callable[[Path, int], Artifact]] = {
    "sklearn": sklearn_model,
    "pytorch": pytorch_model,
    "tensorflow": tensorflow_model,
}


def numbers(value: Any) -> list[float]:
    """Every number in a decoded JSON answer, depth first (answers may be lists or dicts of lists)."""
    if isinstance(value, bool):
        return [float(value)]
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for key in sorted(value) for n in numbers(value[key])]
    if isinstance(value, list):
        return [n for item in value for n in numbers(item)]
    raise AssertionError(f"unexpected value in a prediction: {value!r}")
