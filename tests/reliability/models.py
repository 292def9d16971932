"""Tiny scikit-learn artifacts for the reliability tests (written to a directory, loaded by ServedModel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_classifier(model_dir: Path) -> Path:
    """A LogisticRegression on 4 numeric features: what most sklearn endpoints serve."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(16, 4))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / "model.joblib")
    return model_dir


def write_identity(model_dir: Path) -> Path:
    """A FunctionTransformer that returns its input: a request's decoded value comes back encoded."""
    import joblib
    from sklearn.preprocessing import FunctionTransformer

    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(FunctionTransformer(), model_dir / "model.joblib")
    return model_dir
