"""Train the churn preprocessor and model and package them as SageMaker artifacts.

    python -m examples.sklearn_tf_pipeline.train --out artifacts/

writes

    artifacts/preprocessor.tar.gz   model.joblib (fitted ColumnTransformer) + code/inference.py, code/churn_schema.py
    artifacts/model.tar.gz          1/saved_model.pb + 1/variables/  (Keras model, TF Serving layout)
    artifacts/mme/churn-<region>.tar.gz   per-region scikit-learn Pipelines for a multi-model endpoint
    artifacts/pipeline.json         what the artifacts declare: columns, feature names, hop Content-Types

The data is generated with a seeded RNG (no network): 7 columns, numbers and strings, some missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from examples.sklearn_tf_pipeline.serving import churn_schema

SERVING_DIR = Path(__file__).resolve().parent / "serving"
MME_REGIONS = ("north", "south", "east")


@dataclass
class TrainResult:
    """The fitted objects and where their artifacts are."""

    out_dir: Path
    preprocessor: Any
    model: Any
    preprocessor_tar: Path
    model_tar: Path
    mme_dir: Path
    mme_models: dict[str, Any] = field(default_factory=dict)  # artifact file name -> fitted Pipeline
    manifest: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def make_preprocessor() -> Any:
    """Impute + scale the numbers, impute + one-hot encode the strings; dense float64 output."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
        # Categories never seen in training become all zeros instead of a 400.
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ])
    # Integer column selectors: headerless CSV rows reach the pipeline as a NumPy object array.
    return ColumnTransformer(
        [("numeric", numeric, churn_schema.NUMERIC_INDEX),
         ("categorical", categorical, churn_schema.CATEGORICAL_INDEX)],
        sparse_threshold=0.0,
    )


def make_model(n_features: int, seed: int) -> Any:
    """A small Keras binary classifier."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((n_features,), name="features"),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid", name="churn_probability"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def _tar(source: Path, target: Path) -> Path:
    """``source``'s contents at the archive root, as SageMaker extracts them into /opt/ml/model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            tar.add(path, arcname=str(path.relative_to(source)), recursive=False)
    return target


def _code_dir(target: Path, script: str) -> None:
    """``target/code/``: the given serving script as inference.py, plus churn_schema.py."""
    code = target / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SERVING_DIR / script, code / "inference.py")
    shutil.copyfile(SERVING_DIR / "churn_schema.py", code / "churn_schema.py")


def train(out_dir: str | Path, *, rows: int = 4000, epochs: int = 8, seed: int = 0,
          mme_regions: tuple[str, ...] = MME_REGIONS, verbose: bool = False) -> TrainResult:
    """Generate data, fit the preprocessor, the Keras model and the MME models; write the artifacts."""
    import joblib
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    raw, labels = churn_schema.make_dataset(rows, seed=seed)
    table = churn_schema.parse_rows(raw)
    split = int(0.8 * rows)

    preprocessor = make_preprocessor().fit(table[:split])
    features = preprocessor.transform(table).astype(np.float32)
    timings["preprocessor_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    model = make_model(features.shape[1], seed)
    model.fit(features[:split], labels[:split], epochs=epochs, batch_size=64, verbose=2 if verbose else 0)
    _, accuracy = model.evaluate(features[split:], labels[split:], verbose=0)
    timings["keras_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    staging = out / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    joblib.dump(preprocessor, _mkdir(staging / "preprocessor") / "model.joblib")
    _code_dir(staging / "preprocessor", "preprocessor_inference.py")
    preprocessor_tar = _tar(staging / "preprocessor", out / "preprocessor.tar.gz")
    # TF Serving layout: a SavedModel with a serving_default signature under a numeric version dir.
    model.export(str(staging / "model" / "1"), verbose=False)
    model_tar = _tar(staging / "model", out / "model.tar.gz")

    mme_dir = out / "mme"
    shutil.rmtree(mme_dir, ignore_errors=True)
    mme_models: dict[str, Any] = {}
    region_index = churn_schema.NAMES.index("region")
    for region in mme_regions:
        mask = np.array([row[region_index] == region for row in raw[:split]])
        classifier = Pipeline([("preprocess", clone(make_preprocessor())),
                               ("classify", LogisticRegression(max_iter=1000))])
        classifier.fit(table[:split][mask], labels[:split][mask])
        name = f"churn-{region}.tar.gz"
        joblib.dump(classifier, _mkdir(staging / name) / "model.joblib")
        _code_dir(staging / name, "classifier_inference.py")
        _tar(staging / name, mme_dir / name)
        mme_models[name] = classifier
    shutil.rmtree(staging)
    timings["package_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0

    manifest = {
        "columns": [{"name": n, "kind": k} for n, k in churn_schema.COLUMNS],
        "feature_names": feature_names(preprocessor),
        "n_features": int(features.shape[1]),
        # Which Content-Type the preprocessor puts on its output for each hop format.
        "hop_content_types": churn_schema.HOP_CONTENT_TYPES,
        "request_content_types": list(churn_schema.REQUEST_MEDIA_TYPES),
        "model_input": {"name": "features", "dtype": "float32", "shape": [None, int(features.shape[1])]},
        "holdout_accuracy": round(float(accuracy), 4),
        "holdout_churn_rate": round(float(labels[split:].mean()), 4),
        "rows": rows,
        "epochs": epochs,
        "mme_models": sorted(mme_models),
    }
    (out / "pipeline.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return TrainResult(out, preprocessor, model, preprocessor_tar, model_tar, mme_dir, mme_models, manifest, timings)


def feature_names(preprocessor: Any) -> list[str]:
    """The transformer's output columns, with the raw column names in place of ``x<index>``."""
    names = []
    for name in preprocessor.get_feature_names_out():
        step, _, rest = str(name).partition("__")
        match = re.fullmatch(r"x(\d+)(_.*)?", rest)
        if match:
            rest = churn_schema.NAMES[int(match.group(1))] + (match.group(2) or "")
        names.append(f"{step}__{rest}")
    return names


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: train and package into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="artifacts", help="output directory (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = train(args.out, rows=args.rows, epochs=args.epochs, seed=args.seed, verbose=True)
    print(f"holdout accuracy {result.manifest['holdout_accuracy']:.3f} "
          f"(churn rate {result.manifest['holdout_churn_rate']:.3f}); "
          f"{result.manifest['n_features']} features; trained in {result.timings['total_s']:.1f} s")
    for path in (result.preprocessor_tar, result.model_tar, *sorted(result.mme_dir.glob("*.tar.gz"))):
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
