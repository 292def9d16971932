"""Train a small scikit-learn model, convert it to ONNX with skl2onnx, and pack a SageMaker artifact.

    python examples/custom_framework/train_onnx.py --out /tmp/onnx-model            # iris classifier
    python examples/custom_framework/train_onnx.py --out /tmp/onnx-reg --kind regressor --seed 3

writes ``<out>/model/model.onnx`` and ``<out>/model.tar.gz`` (``model.onnx`` at the archive root, the
layout ``onnx_handler`` serves). Needs ``pip install 'servekit[onnx]'`` (scikit-learn, skl2onnx,
onnxruntime); the serving image needs only onnxruntime.
"""

from __future__ import annotations

import argparse
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class OnnxArtifact:
    """A converted model: its directory, packed archive, sample rows and ONNX Runtime's answers."""

    directory: Path
    archive: Path
    rows: np.ndarray
    #: ONNX Runtime's outputs for ``rows`` in this process, by output name.
    expected: dict[str, np.ndarray]


def train(kind: str = "classifier", seed: int = 0) -> tuple[object, np.ndarray]:
    """A fitted estimator on (a seeded subsample of) iris, and the float32 features it was fitted on."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = load_iris(return_X_y=True)
    features = features.astype(np.float32)
    picked = np.random.default_rng(seed).choice(len(features), size=120, replace=False)
    if kind == "classifier":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        return model.fit(features[picked], labels[picked]), features
    if kind == "regressor":
        # Predict petal width from the other three measurements.
        model = GradientBoostingRegressor(n_estimators=30, max_depth=2, random_state=seed)
        return model.fit(features[picked, :3], features[picked, 3]), features[:, :3]
    raise ValueError(f"unknown kind {kind!r}: classifier or regressor")


def convert(model: object, features: np.ndarray) -> bytes:
    """The estimator as a serialized ONNX model with one float input ``X`` of shape ``[None, n]``.

    ``zipmap=False`` makes a classifier's probabilities a plain ``[None, classes]`` tensor instead
    of a list of ``{class: probability}`` maps.
    """
    from skl2onnx import to_onnx

    options = {"zipmap": False} if hasattr(model, "predict_proba") else None
    onx = to_onnx(model, features[:1], target_opset=None, options=options)
    return bytes(onx.SerializeToString())


def build_artifact(out: Path, kind: str = "classifier", seed: int = 0) -> OnnxArtifact:
    """Train, convert, write ``out/model/model.onnx`` and ``out/model.tar.gz``; run ONNX Runtime on samples."""
    import onnxruntime as ort

    model, features = train(kind, seed)
    blob = convert(model, features)
    directory = out / "model"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(blob)
    archive = out / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory / "model.onnx", arcname="model.onnx")
    rows = features[[0, 60, 120, 7]]
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_outputs()]
    expected = dict(zip(names, session.run(None, {"X": rows}), strict=True))
    return OnnxArtifact(directory, archive, rows, expected)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--out DIR [--kind classifier|regressor] [--seed N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--kind", choices=("classifier", "regressor"), default="classifier")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    artifact = build_artifact(args.out, args.kind, args.seed)
    print(f"wrote {artifact.archive} ({artifact.archive.stat().st_size} bytes)")
    for name, value in artifact.expected.items():
        print(f"  {name} for 4 sample rows: {np.asarray(value).tolist()}")


if __name__ == "__main__":
    main()
