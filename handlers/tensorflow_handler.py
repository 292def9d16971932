"""TensorFlow: SavedModel directories (TF Serving layout) with ``serving_default``, and Keras ``.keras`` files.

Artifact layout (first match wins):

* ``saved_model.pb`` at the artifact root;
* ``<version>/saved_model.pb`` -- numeric version directories as TF Serving lays them out; the highest
  version is served;
* ``<name>/<version>/saved_model.pb`` -- one model directory holding version directories;
* ``model.keras``, else the only ``*.keras`` file -- loaded with ``keras.models.load_model(compile=False)``.

A SavedModel is called through its ``serving_default`` signature (a JSON request may name another
with ``"signature_name"``). JSON input takes TF Serving's REST shapes: ``{"instances": [...]}`` (row
format; rows may be objects keyed by input name), ``{"inputs": ...}`` (columnar; an object keyed by
input name for several inputs) and a bare array. CSV / NPY give one input; NPZ with several arrays
gives named inputs. Inputs are cast to the signature's dtypes. JSON output is
``{"predictions": [...]}``; with several outputs each prediction is an object keyed by output name.
CSV / NPY / NPZ / JSON Lines carry the bare prediction array.
"""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from handlers import codecs
from handlers.artifacts import only_file
from handlers.base import Handler, HandlerOptions
from handlers.errors import BadRequestError, ModelLoadError, PredictionError

logger = logging.getLogger("servekit.handlers.tensorflow")

SERVING_DEFAULT = "serving_default"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Lines of TF/Keras error messages that carry no information for the person who sent the request.
_NOISE = (
    "Graph execution error",
    "Detected at node",
    "<stack traces unavailable>",
    "[[{{node",
    "Exception encountered when calling",
    "Arguments received by",
    "•",
    "Traceback",
    'File "',
)


def _tf_message(exc: BaseException, limit: int = 500) -> str:
    """The informative part of a TensorFlow / Keras error, on one line."""
    lines = []
    for line in _ANSI.sub("", str(exc)).splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(_NOISE):
            lines.append(stripped)
    text = re.sub(r"\s+", " ", " ".join(lines)) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _has_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def _highest_version(path: Path) -> Path | None:
    versions = [p for p in path.iterdir() if p.is_dir() and p.name.isdigit() and _has_saved_model(p)]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def find_artifact(model_dir: str | Path) -> tuple[Path, str]:
    """(path, kind) to load, kind ``"saved_model"`` or ``"keras"``; ``ModelLoadError`` naming what was sought."""
    root = Path(model_dir)
    if _has_saved_model(root):
        return root, "saved_model"
    version = _highest_version(root)
    if version is not None:
        return version, "saved_model"
    named = [p for p in root.iterdir() if p.is_dir() and p.name != "code" and _highest_version(p) is not None]
    if len(named) == 1:
        return _highest_version(named[0]), "saved_model"  # type: ignore[return-value]
    if len(named) > 1:
        raise ModelLoadError(
            f"model artifact {root} holds several SavedModel directories ({', '.join(p.name for p in named)}); "
            "ship one model per artifact"
        )
    if (root / "model.keras").is_file():
        return root / "model.keras", "keras"
    keras_file = only_file(root, ("*.keras",), "name the one to serve model.keras")
    if keras_file is not None:
        return keras_file, "keras"
    raise ModelLoadError(
        f"model artifact {root} has no saved_model.pb (at the root or under a numeric version directory such "
        "as 1/saved_model.pb) and no .keras file; export with model.export(path) or tf.saved_model.save, "
        "or save with model.save('model.keras')"
    )


def _is_keras_model(model: Any) -> bool:
    return hasattr(model, "inputs") and hasattr(model, "predict") and callable(model)


class TFJSONCodec(codecs.JSONCodec):
    """JSON with TF Serving's response shape: ``{"predictions": ...}``."""

    def encode(self, prediction: Any) -> bytes:
        return super().encode({"predictions": _prediction_rows(prediction)})


def _prediction_rows(prediction: Any) -> Any:
    """Several named outputs sharing a batch size -> one object per row (TF Serving's row format)."""
    if isinstance(prediction, Mapping):
        arrays = {str(k): codecs.to_ndarray(v) for k, v in prediction.items()}
        sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
        if len(sizes) == 1 and None not in sizes:
            count = sizes.pop()
            return [{k: a[i].tolist() for k, a in arrays.items()} for i in range(count or 0)]
        return {k: a.tolist() for k, a in arrays.items()}
    return prediction


#: TensorFlow's codecs: the default ones, with JSON answering in TF Serving's shape.
TF_CODECS = codecs.CodecRegistry(
    [TFJSONCodec(), codecs.CSVCodec(), codecs.NPYCodec(), codecs.NPZCodec(), codecs.JSONLinesCodec()]
)


class TensorFlowHandler(Handler):
    """TensorFlow handler (``SERVE_FRAMEWORK=tensorflow``)."""

    name: ClassVar[str] = "tensorflow"
    preload_modules: ClassVar[tuple[str, ...]] = ("numpy", "tensorflow", "keras")
    # Measured: TensorFlow imported in a forkserver parent runs correctly in forked workers
    # (docs/architecture.md, feasibility numbers); importing it starts no thread pools.
    fork_safe: ClassVar[bool] = True
    # TensorFlow's inter/intra-op pools already use every core.
    default_workers: ClassVar[int] = 1

    def __init__(self, options: HandlerOptions | None = None) -> None:
        super().__init__(options)
        self._gpu_id: int | None = None
        self._gpu_probed = False

    @property
    def gpu_id(self) -> int | None:
        """0 when TensorFlow sees a GPU (it places ops there by itself), else None."""
        if not self._gpu_probed:
            import tensorflow as tf

            self._gpu_id = 0 if tf.config.list_physical_devices("GPU") else None
            self._gpu_probed = True
        return self._gpu_id

    def load(self, model_dir: str) -> Any:
        """Load the SavedModel (checking ``serving_default``) or the ``.keras`` model."""
        path, kind = find_artifact(model_dir)
        try:
            if kind == "keras":
                import keras

                return keras.models.load_model(str(path), compile=False)
            import tensorflow as tf

            model = tf.saved_model.load(str(path))
        except Exception as exc:
            hint = (
                " (a custom layer or object needs code: load it in a model_fn in code/inference.py with "
                "custom_objects=...)"
                if kind == "keras"
                else ""
            )
            raise ModelLoadError(f"cannot load {kind} {path}: {type(exc).__name__}: {_tf_message(exc)}{hint}") from exc
        signatures = getattr(model, "signatures", {})
        if SERVING_DEFAULT not in signatures:
            raise ModelLoadError(
                f"SavedModel {path} has no {SERVING_DEFAULT!r} signature (it has: "
                f"{', '.join(signatures) or 'none'}); export it with signatures={{'{SERVING_DEFAULT}': fn}}"
            )
        logger.info("loaded SavedModel %s", path)
        return model

    def decode(self, body: bytes, content_type: str | None) -> Any:
        """Parsed JSON (any TF Serving shape), or arrays from CSV / NPY / NPZ / JSON Lines."""
        return TF_CODECS.decode(body, content_type)

    def encode(self, prediction: Any, accept: str | None) -> tuple[bytes, str]:
        """Tensors -> arrays; JSON as ``{"predictions": ...}``, other types the bare arrays."""
        return TF_CODECS.encode(to_numpy(prediction), accept, default_accept=self.options.default_accept)

    def predict(self, model: Any, data: Any) -> Any:
        """Run the signature (or Keras model) on ``data``; input errors -> 400."""
        import tensorflow as tf

        signature_name = SERVING_DEFAULT
        if isinstance(data, Mapping) and "signature_name" in data:
            data = dict(data)
            signature_name = str(data.pop("signature_name"))
        inputs = _request_inputs(data)
        try:
            if _is_keras_model(model):
                return to_numpy(_call_keras(model, inputs))
            signatures = getattr(model, "signatures", None)
            if signatures is not None:
                if signature_name not in signatures:
                    raise BadRequestError(
                        f"the model has no signature {signature_name!r}; it has {', '.join(signatures)}"
                    )
                fn = signatures[signature_name]
            elif callable(model):
                fn = model  # a tf.function or ConcreteFunction returned by a user model_fn
            else:
                raise PredictionError(
                    f"cannot call a {type(model).__name__}; return a SavedModel, a Keras model or a function "
                    "from model_fn, or define predict_fn"
                )
            return to_numpy(_call_signature(fn, inputs))
        except (BadRequestError, PredictionError):
            raise
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise BadRequestError(f"the model rejected the input: {_tf_message(exc)}") from exc
        except tf.errors.OpError as exc:
            raise PredictionError(f"the model failed: {type(exc).__name__}: {_tf_message(exc)}") from exc

    def unload(self, model: Any) -> None:
        """Drop the model and collect (TensorFlow frees its buffers when the objects go)."""
        del model
        gc.collect()


def _request_inputs(data: Any) -> Any:
    """TF Serving request shapes -> an array-like (one input) or ``{name: array-like}`` (named inputs)."""
    if isinstance(data, Mapping):
        if "instances" in data:
            rows = data["instances"]
            if isinstance(rows, list) and rows and all(isinstance(r, Mapping) for r in rows):
                names = list(rows[0])
                try:
                    return {name: [row[name] for row in rows] for name in names}
                except KeyError as exc:
                    raise BadRequestError(
                        f"an instance lacks input {exc.args[0]!r}; every instance needs all inputs"
                    ) from exc
            return rows
        if "inputs" in data:
            return data["inputs"]
        if all(isinstance(v, np.ndarray) for v in data.values()):
            return dict(data)  # NPZ with several arrays
        raise BadRequestError(
            'JSON input must be {"instances": [...]}, {"inputs": ...} or a bare array; got an object with keys '
            + ", ".join(map(str, data))
        )
    return data


def _as_array(value: Any, dtype: Any, name: str) -> Any:
    """``value`` as a NumPy array of the TF ``dtype`` (strings stay objects for tf.string)."""
    try:
        if dtype.name == "string":
            return np.asarray(value, dtype=object)
        return np.asarray(codecs.to_ndarray(value)).astype(dtype.as_numpy_dtype)
    except (TypeError, ValueError) as exc:
        raise BadRequestError(f"input {name!r} cannot be read as {dtype.name}: {exc}") from exc


def _call_signature(fn: Any, inputs: Any) -> Any:
    import tensorflow as tf

    specs: dict[str, Any] = {}
    structured = getattr(fn, "structured_input_signature", None)
    if structured is not None:
        specs = dict(structured[1])
    if not specs:
        return fn(tf.constant(codecs.to_ndarray(inputs)))
    if not isinstance(inputs, Mapping):
        if len(specs) != 1:
            raise BadRequestError(
                f"the model takes several inputs ({', '.join(specs)}); send "
                '{"inputs": {"<name>": ...}} or instances that are objects keyed by input name'
            )
        inputs = {next(iter(specs)): inputs}
    missing = [n for n in specs if n not in inputs]
    unknown = [n for n in inputs if n not in specs]
    if missing or unknown:
        raise BadRequestError(
            f"the model takes inputs {', '.join(specs)}; "
            + (f"missing {', '.join(missing)}" if missing else "")
            + ("; " if missing and unknown else "")
            + (f"unknown {', '.join(map(str, unknown))}" if unknown else "")
        )
    tensors = {n: tf.constant(_as_array(v, specs[n].dtype, n)) for n, v in inputs.items()}
    outputs = fn(**tensors)
    if isinstance(outputs, Mapping) and len(outputs) == 1:
        return next(iter(outputs.values()))
    return outputs


def _call_keras(model: Any, inputs: Any) -> Any:
    import tensorflow as tf

    model_inputs = list(model.inputs or [])
    names = [getattr(t, "name", f"input_{i}") for i, t in enumerate(model_inputs)]
    dtypes = [tf.as_dtype(getattr(t, "dtype", "float32")) for t in model_inputs] or [tf.float32]
    if isinstance(inputs, Mapping):
        unknown = [n for n in inputs if n not in names]
        if unknown:
            raise BadRequestError(f"the model takes inputs {', '.join(names)}; unknown {', '.join(map(str, unknown))}")
        arrays: Any = {n: _as_array(v, dtypes[names.index(n)], n) for n, v in inputs.items()}
    else:
        if len(model_inputs) > 1:
            raise BadRequestError(
                f"the model takes several inputs ({', '.join(names)}); send {{\"inputs\": {{\"<name>\": ...}}}}"
            )
        arrays = _as_array(inputs, dtypes[0], names[0] if names else "input")
    return model(arrays, training=False)


def to_numpy(value: Any) -> Any:
    """Tensors (also inside dicts, lists and tuples) -> NumPy arrays."""
    if hasattr(value, "numpy") and callable(value.numpy) and not isinstance(value, np.ndarray):
        return value.numpy()
    if isinstance(value, Mapping):
        return {k: to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_numpy(v) for v in value]
    return value


__all__ = ["TF_CODECS", "TensorFlowHandler", "find_artifact"]
