"""Model artifacts (trained here, by tests/support/models.py) and the request bodies sent to them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.models import ROWS, sklearn_artifact, tensorflow_artifact, torch_artifact

CONTENT_TYPES = {"csv": "text/csv", "json": "application/json"}
#: One row of four features: iris' first sample for scikit-learn, tests/support/models.ROWS[0] otherwise.
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


@dataclass(frozen=True)
class Artifact:
    framework: str
    path: Path  # the extracted model directory (no code/: each stack loads it its own default way)


def row(framework: str) -> list[float]:
    return IRIS_ROW if framework == "sklearn" else ROWS[0]


def body(framework: str, fmt: str) -> bytes:
    values = row(framework)
    if fmt == "csv":
        return (",".join(str(v) for v in values) + "\n").encode()
    return ("[[" + ", ".join(str(v) for v in values) + "]]").encode()


def make(framework: str, directory: Path, seed: int = 0) -> Artifact:
    if framework == "sklearn":
        sklearn_artifact(directory, seed=seed)
    elif framework == "pytorch":
        torch_artifact(directory, seed=seed)
    elif framework == "tensorflow":
        tensorflow_artifact(directory, seed=seed)
    else:
        raise ValueError(f"unknown framework {framework!r}")
    return Artifact(framework, directory)


def make_many(framework: str, root: Path, count: int) -> list[Artifact]:
    """``count`` distinct models (different seeds), as MME loads them."""
    return [make(framework, root / f"m{i:02d}", seed=i) for i in range(count)]


def pipeline_pair(root: Path) -> tuple[Path, Path]:
    """A StandardScaler and a LogisticRegression trained on its output: a two-container pipeline."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features, labels = load_iris(return_X_y=True)
    scaler = StandardScaler().fit(features)
    classifier = LogisticRegression(max_iter=500).fit(scaler.transform(features), labels)
    paths = (root / "scaler", root / "classifier")
    for path, model in zip(paths, (scaler, classifier), strict=True):
        path.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, path / "model.joblib")
    return paths
