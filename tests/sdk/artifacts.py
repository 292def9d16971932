"""Model artifacts the SDK tests deploy, trained here (no downloads) and uploaded to moto S3.

Each builder returns the artifact's ``s3://`` URL plus what the model answers for the test rows, computed
in this process, so the SDK scripts' answers are checked against the real model.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.sdk.conftest import BUCKET, LocalAws

#: Iris rows of each class (0, 1, 2) and one more.
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [5.7, 2.8, 4.1, 1.3], [6.7, 3.0, 5.2, 2.3], [4.9, 3.0, 1.4, 0.2]]


@dataclass(frozen=True)
class Artifact:
    """A ``model.tar.gz`` in moto S3 and its expected answers for ``rows``."""

    url: str
    rows: list[list[float]]
    expected: Any


def tar_bytes(files: dict[str, bytes]) -> bytes:
    """A gzipped tar holding ``files`` (name -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def upload(aws: LocalAws, key: str, files: dict[str, bytes]) -> str:
    """Upload a tar of ``files`` as ``s3://BUCKET/key``."""
    aws.s3().put_object(Bucket=BUCKET, Key=key, Body=tar_bytes(files))
    return f"s3://{BUCKET}/{key}"


def _joblib_bytes(model: Any) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def iris_classifier(label_shift: int = 0) -> Any:
    """LogisticRegression on iris; ``label_shift`` relabels class c as (c + shift) % 3, so two models differ."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(features, (labels + label_shift) % 3)


def sklearn_model(aws: LocalAws, key: str, label_shift: int = 0) -> Artifact:
    """``model.joblib`` of ``iris_classifier``; expected: its labels (the default predict)."""
    model = iris_classifier(label_shift)
    url = upload(aws, key, {"model.joblib": _joblib_bytes(model)})
    return Artifact(url, IRIS_ROWS, model.predict(np.array(IRIS_ROWS)).tolist())


def iris_proba(label_shift: int = 0) -> list[list[float]]:
    """What a ``predict_fn`` returning ``predict_proba`` answers for IRIS_ROWS."""
    return iris_classifier(label_shift).predict_proba(np.array(IRIS_ROWS)).tolist()


def scaler_and_classifier(aws: LocalAws, prefix: str) -> tuple[str, Artifact]:
    """A StandardScaler artifact and a classifier trained on scaled iris; expected: labels of scaled rows."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features, labels = load_iris(return_X_y=True)
    scaler = StandardScaler().fit(features * 10 + 100)
    classifier = LogisticRegression(max_iter=1000).fit(scaler.transform(features * 10 + 100), labels)
    rows = (np.array(IRIS_ROWS) * 10 + 100).tolist()
    scaler_url = upload(aws, f"{prefix}/scaler.tar.gz", {"model.joblib": _joblib_bytes(scaler)})
    expected = classifier.predict(scaler.transform(np.array(rows))).tolist()
    unscaled = classifier.predict(np.array(rows)).tolist()
    assert expected != unscaled, "test data: the classifier must answer differently without the scaler"
    classifier_url = upload(aws, f"{prefix}/classifier.tar.gz", {"model.joblib": _joblib_bytes(classifier)})
    return scaler_url, Artifact(classifier_url, rows, expected)


def torch_state_dict(aws: LocalAws, key: str) -> Artifact:
    """``model.pth``: the state dict of the script's ``IrisNet``; expected: its softmax outputs."""
    import torch

    torch.manual_seed(7)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    buffer = io.BytesIO()
    # Keys as the script's module names them: layers.0.weight ...
    torch.save({f"layers.{k}": v for k, v in net.state_dict().items()}, buffer)
    with torch.inference_mode():
        expected = torch.softmax(net(torch.tensor(IRIS_ROWS)), dim=1).tolist()
    return Artifact(upload(aws, key, {"model.pth": buffer.getvalue()}), IRIS_ROWS, expected)


def tensorflow_saved_model(aws: LocalAws, key: str, work: Path) -> Artifact:
    """A SavedModel under ``1/`` (TF Serving's layout); expected: its softmax outputs."""
    from tests.support.models import tensorflow_artifact

    saved = tensorflow_artifact(work / "tf", seed=3)
    files = {str(p.relative_to(saved.path)): p.read_bytes() for p in saved.path.rglob("*") if p.is_file()}
    return Artifact(upload(aws, key, files), saved.rows, saved.expected)


def token_generator(aws: LocalAws, key: str, work: Path) -> Artifact:
    """The character-level PyTorch model of tests/harness/token_model.py, trained here, with its
    streaming user script in ``code/``; expected: the tokens it streams for ``token_model.REQUEST``."""
    from tests.harness import token_model

    directory = token_model.train(work / "token-model")
    files = {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
    return Artifact(upload(aws, key, files), [], token_model.expected_tokens(directory))
