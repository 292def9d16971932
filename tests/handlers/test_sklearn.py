"""scikit-learn handler: tiny real models trained here, every layout and codec, compared with sklearn."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed: pip install -e '.[sklearn]'")
joblib = pytest.importorskip("joblib", reason="joblib is not installed: pip install -e '.[sklearn]'")

from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

from handlers.base import HandlerOptions  # noqa: E402
from handlers.errors import BadRequestError, ModelLoadError  # noqa: E402
from handlers.model import ServedModel  # noqa: E402
from handlers.registry import handler_class  # noqa: E402
from handlers.sklearn_handler import SklearnHandler, to_sklearn_input  # noqa: E402
from tests.handlers.helpers import (  # noqa: E402
    ACCEPTS,
    INPUTS,
    assert_clean,
    csv_rows,
    decode_output,
    req,
    write,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 4))
Y = (X[:, 0] + X[:, 1] > 0).astype(int)
X_TEST = RNG.normal(size=(5, 4))


@pytest.fixture(scope="module")
def classifier() -> LogisticRegression:
    return LogisticRegression().fit(X, Y)


def save(model: object, model_dir: Path, layout: str) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    if layout == "model.joblib":
        joblib.dump(model, model_dir / "model.joblib")
    elif layout == "model.pkl":
        with open(model_dir / "model.pkl", "wb") as f:
            pickle.dump(model, f)
    elif layout == "single *.joblib":
        joblib.dump(model, model_dir / "my-classifier.joblib")
    elif layout == "single *.pkl":
        with open(model_dir / "clf.pkl", "wb") as f:
            pickle.dump(model, f)
    return model_dir


@pytest.mark.parametrize("layout", ["model.joblib", "model.pkl", "single *.joblib", "single *.pkl"])
def test_layouts_every_codec_match_sklearn(tmp_path: Path, classifier: LogisticRegression, layout: str) -> None:
    served = ServedModel.load(SklearnHandler(), str(save(classifier, tmp_path / "m", layout)))
    expected = classifier.predict(X_TEST)
    for ctype, make in INPUTS.items():
        for accept in ACCEPTS:
            out = served.invoke(req(make(X_TEST), ctype.split(" ")[0], accept))
            assert out.content_type == accept
            np.testing.assert_array_equal(decode_output(out.body, out.content_type).ravel(), expected, err_msg=ctype)
    served.unload()
    assert served.model is None


def test_single_record_flat_list(tmp_path: Path, classifier: LogisticRegression) -> None:
    served = ServedModel.load(SklearnHandler(), str(save(classifier, tmp_path / "m", "model.joblib")))
    out = served.invoke(req(json.dumps(X_TEST[0].tolist())))
    assert json.loads(out.body) == classifier.predict(X_TEST[:1]).tolist()


def test_pipeline_with_categorical_csv(tmp_path: Path) -> None:
    colors = np.array(["red", "green", "blue"])[RNG.integers(0, 3, size=40)]
    train = np.empty((40, 2), dtype=object)
    train[:, 0] = X[:, 0]
    train[:, 1] = colors
    target = ((X[:, 0] > 0) | (colors == "red")).astype(int)
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [("num", StandardScaler(), [0]), ("cat", OneHotEncoder(handle_unknown="ignore"), [1])]
                ),
            ),
            ("clf", LogisticRegression()),
        ]
    ).fit(train, target)
    model_dir = tmp_path / "pipe"
    model_dir.mkdir()
    joblib.dump(pipeline, model_dir / "model.joblib")
    served = ServedModel.load(SklearnHandler(), str(model_dir))
    rows = train[:6]
    body = "".join(f"{row[0]!r},{row[1]}\n" for row in rows)
    out = served.invoke(req(body, "text/csv", "application/json"))
    assert json.loads(out.body) == pipeline.predict(rows).tolist()
    # The same rows as JSON with mixed types.
    out = served.invoke(req(json.dumps([[float(r[0]), r[1]] for r in rows])))
    assert json.loads(out.body) == pipeline.predict(rows).tolist()


def test_transformer_without_predict_uses_transform(tmp_path: Path) -> None:
    scaler = StandardScaler().fit(X)
    model_dir = tmp_path / "scaler"
    model_dir.mkdir()
    joblib.dump(scaler, model_dir / "model.joblib")
    served = ServedModel.load(SklearnHandler(), str(model_dir))
    out = served.invoke(req(csv_rows(X_TEST), "text/csv", "application/x-npy"))
    np.testing.assert_allclose(np.load(io.BytesIO(out.body)), scaler.transform(X_TEST))


def test_predict_proba_through_predict_fn(tmp_path: Path, classifier: LogisticRegression) -> None:
    model_dir = save(classifier, tmp_path / "m", "model.joblib")
    write(model_dir / "code" / "inference.py", "def predict_fn(data, model):\n    return model.predict_proba(data)\n")
    out = ServedModel.load(SklearnHandler(), str(model_dir)).invoke(req(json.dumps(X_TEST.tolist())))
    np.testing.assert_allclose(json.loads(out.body), classifier.predict_proba(X_TEST))


def test_wrong_feature_count_is_400(tmp_path: Path, classifier: LogisticRegression) -> None:
    served = ServedModel.load(SklearnHandler(), str(save(classifier, tmp_path / "m", "model.joblib")))
    with pytest.raises(BadRequestError) as info:
        served.invoke(req("1,2\n", "text/csv"))
    assert "features" in info.value.message
    assert_clean(info.value.message)
    with pytest.raises(BadRequestError):
        served.invoke(req("a,b,c,d\n", "text/csv"))
    with pytest.raises(BadRequestError, match="different lengths"):
        served.invoke(req("[[1,2,3,4],[1,2]]"))


def test_load_errors_name_what_was_looked_for(tmp_path: Path, classifier: LogisticRegression) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="model.joblib"):
        ServedModel.load(SklearnHandler(), str(empty))
    two = tmp_path / "two"
    two.mkdir()
    joblib.dump(classifier, two / "a.joblib")
    joblib.dump(classifier, two / "b.joblib")
    with pytest.raises(ModelLoadError, match=r"a\.joblib, b\.joblib"):
        ServedModel.load(SklearnHandler(), str(two))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.joblib").write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="model.joblib") as info:
        ServedModel.load(SklearnHandler(), str(corrupt))
    assert_clean(info.value.message)
    useless = tmp_path / "useless"
    useless.mkdir()
    joblib.dump({"not": "a model"}, useless / "model.joblib")
    with pytest.raises(ModelLoadError, match="neither predict nor transform"):
        ServedModel.load(SklearnHandler(), str(useless))


def test_to_sklearn_input_conversions() -> None:
    assert to_sklearn_input([1, 2]).shape == (1, 2)
    assert to_sklearn_input({"inputs": [[1, 2]]}).shape == (1, 2)
    text = to_sklearn_input(["a doc", "another"])
    assert text.shape == (2,)  # text pipelines take 1-D documents
    mixed = to_sklearn_input([[1, "a"], [2, "b"]])
    assert mixed.dtype == object and mixed[0, 0] == 1
    with pytest.raises(BadRequestError):
        to_sklearn_input([])


def test_registry_and_class_attributes() -> None:
    cls = handler_class("sklearn")
    assert cls is SklearnHandler
    assert cls.name == "sklearn" and cls.fork_safe and cls.default_workers >= 1
    assert "sklearn" in cls.preload_modules
    assert SklearnHandler(HandlerOptions(default_accept="text/csv")).options.default_accept == "text/csv"
