"""scikit-learn: estimators, pipelines and transformers saved with joblib or pickle.

Artifact layout (first match wins): ``model.joblib``, ``model.pkl``, the only ``*.joblib``, the only
``*.pkl`` in the artifact directory. Loading uses ``joblib.load`` (which also reads plain pickles):
only load artifacts you trust, as with any pickle.

Prediction: ``model.predict(X)`` when the object has ``predict``; otherwise ``model.transform(X)``
(a fitted preprocessor or a pipeline ending in a transformer). Anything else -- ``predict_proba``,
``decision_function``, a different method per request -- is one line in the user script::

    def predict_fn(data, model):
        return model.predict_proba(data)

Input: the codecs' output made into what scikit-learn takes. JSON ``[[...], ...]`` (or TF Serving's
``{"instances": ...}`` / ``{"inputs": ...}``) -> ndarray (float where numeric, ``object`` for mixed
rows with strings); a 1-D numeric array is one record and becomes shape ``(1, n)`` (1-D strings stay
1-D, what text pipelines take); CSV -> float or object ndarray (DataFrame with ``header=present`` and
pandas installed); NPY/NPZ arrays and scipy sparse matrices pass through. JSON records
(``[{"col": v}, ...]``) or a dict of columns need pandas, and become a DataFrame.
"""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from handlers import codecs
from handlers.artifacts import only_file
from handlers.base import Handler
from handlers.errors import BadRequestError, ModelLoadError
from handlers.limits import DEFAULT_LIMITS, DecodeLimits

logger = logging.getLogger("servekit.handlers.sklearn")

#: Fixed artifact names, in order of preference; then a single ``*.joblib``, then a single ``*.pkl``.
ARTIFACT_NAMES = ("model.joblib", "model.pkl")


def find_artifact(model_dir: str | Path) -> Path:
    """The file to load from ``model_dir`` (``ModelLoadError`` naming what was looked for)."""
    root = Path(model_dir)
    for name in ARTIFACT_NAMES:
        if (root / name).is_file():
            return root / name
    for pattern in ("*.joblib", "*.pkl"):
        found = only_file(root, (pattern,), "name the one to serve model.joblib, or load it in a model_fn in "
                                            "code/inference.py")
        if found is not None:
            return found
    raise ModelLoadError(
        f"model artifact {root} has no model.joblib, model.pkl or other *.joblib / *.pkl file; save the "
        "estimator with joblib.dump(model, 'model.joblib') at the artifact's root"
    )


def _has_number(values: Any) -> bool:
    if isinstance(values, (list, tuple)):
        return any(_has_number(v) for v in values)
    return isinstance(values, (int, float)) and not isinstance(values, bool)


def to_sklearn_input(data: Any, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    """Decoded request data -> an array-like scikit-learn accepts (``BadRequestError`` if impossible).

    Lists become arrays within ``limits`` (``codecs.as_array``: strings whose fixed-width form would
    exceed the decoded-size limit become an ``object`` array instead; 413 beyond it even so)."""
    if isinstance(data, Mapping):
        for key in ("instances", "inputs"):
            if key in data:
                return to_sklearn_input(data[key], limits)
        return _dataframe(data, "a JSON object of columns")
    if isinstance(data, (list, tuple)):
        if not data:
            raise BadRequestError("the input has no rows")
        if all(isinstance(row, Mapping) for row in data):
            return _dataframe(list(data), "JSON records")
        try:
            arr = codecs.as_array(data, limits)
        except ValueError as exc:
            raise BadRequestError(
                "the input rows have different lengths; send a list of equally long rows"
            ) from exc
        if arr.dtype.kind in "USO" and _has_number(data):
            # Mixed numbers and strings: keep numbers numeric (np.asarray would make them all text).
            # A flat mixed list is one record, like a flat numeric list.
            arr = np.array(data, dtype=object)
            if arr.ndim == 1:
                arr = arr.reshape(1, -1)
        data = arr
    if isinstance(data, np.ndarray):
        if data.dtype == object and data.ndim >= 1:
            try:
                data = data.astype(np.float64)
            except (TypeError, ValueError):
                pass
        if data.ndim == 0:
            data = data.reshape(1, 1)
        elif data.ndim == 1 and data.dtype.kind in "biuf":
            # One record of numeric features (the sagemaker-scikit-learn-container convention).
            data = data.reshape(1, -1)
    return data


def _dataframe(data: Any, what: str) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise BadRequestError(
            f"{what} need pandas, which is not installed in this image; send a list of rows instead"
        ) from exc
    try:
        return pd.DataFrame(data)
    except ValueError as exc:
        raise BadRequestError(f"{what} cannot be made into a table: {exc}") from exc


class SklearnHandler(Handler):
    """scikit-learn handler (``SERVE_FRAMEWORK=sklearn``)."""

    name: ClassVar[str] = "sklearn"
    # Importing these once in the fork parent keeps them out of each model's private memory; the
    # estimator's own submodule is imported on unpickling if it is not among them.
    preload_modules: ClassVar[tuple[str, ...]] = (
        "numpy",
        "scipy.sparse",
        "joblib",
        "sklearn",
        "sklearn.base",
        "sklearn.pipeline",
        "sklearn.compose",
        "sklearn.preprocessing",
        "sklearn.linear_model",
        "sklearn.ensemble",
        "sklearn.tree",
    )
    # Importing scikit-learn starts no threads (OpenMP pools start on first parallel use).
    fork_safe: ClassVar[bool] = True
    # Prediction holds the GIL for most estimators: two processes use the two cores of a small
    # instance. SAGEMAKER_MODEL_SERVER_WORKERS overrides.
    default_workers: ClassVar[int] = 2

    def load(self, model_dir: str) -> Any:
        """Load the estimator found by ``find_artifact`` with joblib."""
        import joblib

        path = find_artifact(model_dir)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = joblib.load(path)
        except ModuleNotFoundError as exc:
            raise ModelLoadError(
                f"cannot load {path}: it needs module {exc.name!r}; install it in the image, or ship the "
                "module next to code/inference.py"
            ) from exc
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load {path} with joblib: {type(exc).__name__}: {exc}. Save it with "
                "joblib.dump(model, 'model.joblib') using the scikit-learn version this image has"
            ) from exc
        for warning in caught:
            # e.g. InconsistentVersionWarning: the pickle comes from another scikit-learn version.
            logger.warning("loading %s: %s", path, warning.message)
        if not (callable(getattr(model, "predict", None)) or callable(getattr(model, "transform", None))):
            raise ModelLoadError(
                f"{path} holds a {type(model).__name__}, which has neither predict nor transform; save a "
                "fitted estimator, pipeline or transformer, or define predict_fn in code/inference.py"
            )
        return model

    def decode(self, body: bytes, content_type: str | None) -> Any:
        """Codec output made scikit-learn ready (what a user ``predict_fn`` receives by default)."""
        return to_sklearn_input(super().decode(body, content_type), self.options.decode_limits())

    def predict(self, model: Any, data: Any) -> Any:
        """``predict`` when the model has it, else ``transform``; input errors -> 400."""
        data = to_sklearn_input(data, self.options.decode_limits())
        method = getattr(model, "predict", None)
        if not callable(method):
            method = model.transform
        try:
            return method(data)
        except (ValueError, TypeError) as exc:
            # scikit-learn validates input with ValueError (feature count, dtype, NaN, unknown category).
            raise BadRequestError(f"{type(model).__name__}.{method.__name__} rejected the input: {exc}") from exc

    def unload(self, model: Any) -> None:
        """Nothing framework-specific to release; collect so the estimator's arrays go back now."""
        del model
        gc.collect()
