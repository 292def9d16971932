"""TensorFlow: SavedModel directories (TF Serving layout, TF1 and TF2 formats) and Keras ``.keras`` files.

Artifact layouts (first match wins):

* ``saved_model.pb`` at the artifact root (one unversioned model);
* ``<version>/saved_model.pb`` -- numeric version directories as TF Serving lays them out; every
  version is loaded, the highest serves by default, ``tfs-model-version=<v>`` in Custom-Attributes
  selects another (``handlers.tfs_rest``);
* ``<name>/<version>/saved_model.pb`` -- one model directory holding version directories;
* ``model.keras``, else the only ``*.keras`` file -- loaded with ``keras.models.load_model(compile=False)``.

TF1-format SavedModels are loaded into a ``Session`` as TF Serving does (``handlers.tfs_savedmodel``).
A SavedModel is called through its ``serving_default`` signature (a JSON request may name another
with ``"signature_name"``). JSON input takes TF Serving's REST shapes: ``{"instances": [...]}`` (row
format; rows may be objects keyed by input name), ``{"inputs": ...}`` (columnar; an object keyed by
input name for several inputs) and a bare array. CSV / NPY give one input; NPZ with several arrays
gives named inputs. Inputs are cast to the signature's dtypes. JSON output is
``{"predictions": [...]}``; with several outputs each prediction is an object keyed by output name.
CSV / NPY / NPZ / JSON Lines carry the bare prediction array. ``tfs-method=classify|regress`` runs
TF Serving's Classify / Regress API on JSON ``{"examples": [...]}``.

A user script following AWS's TF Serving container contract (``handler`` or ``input_handler`` /
``output_handler``) is served by ``handlers.tfs_contract``.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from handlers import codecs, tfs_contract, tfs_rest
from handlers.artifacts import only_file
from handlers.base import Handler, HandlerOptions, Request, ScriptInvoker
from handlers.errors import BadRequestError, ModelLoadError, PredictionError, UnsupportedAcceptError
from handlers.limits import DecodeLimits
from handlers.tfs_rest import Servable, TFSResult, prediction_rows
from handlers.tfs_savedmodel import TF1SavedModel, has_saved_model, load_saved_model, version_dirs

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


def find_versions(model_dir: str | Path) -> tuple[str | None, dict[int | None, Path]]:
    """(model name or None, ``{version: SavedModel directory}``) -- version None for a root SavedModel;
    ``{}`` when the artifact holds no SavedModel. ``ModelLoadError`` for several model directories."""
    root = Path(model_dir)
    if has_saved_model(root):
        return None, {None: root}
    versions: dict[int | None, Path] = {number: path for number, path in version_dirs(root).items()}
    if versions:
        return None, versions
    named = {p: version_dirs(p) for p in sorted(root.iterdir()) if p.is_dir() and p.name != "code"}
    named = {p: v for p, v in named.items() if v}
    if len(named) > 1:
        raise ModelLoadError(
            f"model artifact {root} holds several SavedModel directories ({', '.join(p.name for p in named)}); "
            "ship one model per artifact"
        )
    if named:
        directory, found = next(iter(named.items()))
        return directory.name, {number: path for number, path in found.items()}
    return None, {}


def find_artifact(model_dir: str | Path) -> tuple[Path, str]:
    """(path, kind) served by default, kind ``"saved_model"`` or ``"keras"``; ``ModelLoadError`` naming
    what was sought."""
    root = Path(model_dir)
    _, versions = find_versions(root)
    if versions:
        return versions[max(versions, key=lambda v: -1 if v is None else v)], "saved_model"
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
    """JSON with TF Serving's response shape: ``{"predictions": ...}`` (classify / regress: ``{"results": ...}``)."""

    def encode(self, prediction: Any) -> bytes:
        if isinstance(prediction, TFSResult):
            return super().encode(dict(prediction))
        return super().encode({"predictions": prediction_rows(prediction)})


#: TensorFlow's codecs: the default ones, with JSON answering in TF Serving's shape.
TF_CODECS = codecs.CodecRegistry(
    [TFJSONCodec(), codecs.CSVCodec(), codecs.NPYCodec(), codecs.NPZCodec(), codecs.JSONLinesCodec()]
)


class TensorFlowHandler(Handler):
    """TensorFlow handler (``SERVE_FRAMEWORK=tensorflow``)."""

    name: ClassVar[str] = "tensorflow"
    preload_modules: ClassVar[tuple[str, ...]] = ("numpy", "tensorflow", "keras")
    # Measured: TensorFlow imported in a forkserver parent runs correctly in forked workers
    # (docs/architecture.md, "Feasibility numbers"); importing it starts no thread pools.
    fork_safe: ClassVar[bool] = True
    # TensorFlow's inter/intra-op pools already use every core.
    default_workers: ClassVar[int] = 1

    def __init__(self, options: HandlerOptions | None = None) -> None:
        super().__init__(options)
        self._gpu_id: int | None = None
        self._gpu_probed = False
        # id(default model) -> its Servable (all versions, REST server). Keyed by id so the model itself
        # stays what it always was (user predict_fn code sees the SavedModel / Keras object).
        self._servables: dict[int, Servable] = {}
        self._lock = threading.Lock()

    @property
    def gpu_id(self) -> int | None:
        """0 when TensorFlow sees a GPU (it places ops there by itself), else None."""
        if not self._gpu_probed:
            import tensorflow as tf

            self._gpu_id = 0 if tf.config.list_physical_devices("GPU") else None
            self._gpu_probed = True
        return self._gpu_id

    def load(self, model_dir: str) -> Any:
        """Load every SavedModel version (TF1 or TF2 format) or the ``.keras`` model; return the default one."""
        name, versions = find_versions(model_dir)
        if not versions:
            path, _ = find_artifact(model_dir)
            return self._register(Servable(default=_load_keras(path)))
        servable = Servable(default=None)
        try:
            for version in sorted(versions, key=lambda v: -1 if v is None else v):
                model, methods = _load_version(versions[version], version)
                if isinstance(model, TF1SavedModel):
                    servable.closers.append(model.close)
                servable.methods[version] = methods
                servable.default = model
                if version is not None:
                    servable.versions[version] = model
        except BaseException:
            servable.close()
            raise
        if name is not None:
            servable.names.add(name)
        logger.info("loaded SavedModel %s (versions: %s)", model_dir, ", ".join(map(str, servable.versions)) or "-")
        return self._register(servable)

    def _register(self, servable: Servable) -> Any:
        with self._lock:
            self._servables[id(servable.default)] = servable
        return servable.default

    def servable(self, model: Any) -> Servable:
        """The versions behind ``model``; a model from a user ``model_fn`` is one unversioned servable."""
        with self._lock:
            found = self._servables.get(id(model))
        if found is None or found.default is not model:
            methods = {n: getattr(f, "method_name", "tensorflow/serving/predict")
                       for n, f in (getattr(model, "signatures", None) or {}).items()}  # fmt: skip
            self._register(Servable(default=model, methods={None: methods}))
            found = self._servables[id(model)]
        return found

    def predict_request(self, model: Any, data: Any, request: Request) -> Any:
        """``predict`` on the version and method named by ``tfs-*`` Custom-Attributes (AWS's keys)."""
        servable = self.servable(model)
        attributes = tfs_rest.parse_tfs_attributes(request.custom_attributes)
        method = tfs_rest.check_method(attributes.get("tfs-method", "predict"))
        requested_name = attributes.get("tfs-model-name")
        if requested_name is not None and request.target_model is None:
            with servable.lock:
                servable.names.add(request.model_name)
            servable.check_name(requested_name)
        version, chosen = servable.select(attributes.get("tfs-model-version"))
        if method == "predict":
            return self.predict(chosen, data)
        if not isinstance(data, Mapping):
            raise BadRequestError(f"tfs-method={method} takes a JSON object with 'examples'")
        return tfs_rest.classify_regress(chosen, servable.methods.get(version, {}), method, data)

    def script_invoker(self, script: ModuleType, path: Path) -> ScriptInvoker | None:
        """AWS's TF Serving script contract (``handler`` / ``input_handler`` / ``output_handler``), if used."""
        functions = tfs_contract.find_contract(script, path)
        if not functions:
            return None
        return tfs_contract.ContractInvoker(functions, path, self.servable, self.predict,
                                            self.options.safe_port_range)

    def codec_registry(self) -> codecs.CodecRegistry:
        """Parsed JSON (any TF Serving shape), or arrays from CSV / NPY / NPZ / JSON Lines; JSON answers
        as ``{"predictions": ...}``."""
        return TF_CODECS

    def encode(self, prediction: Any, accept: str | None) -> tuple[bytes, str]:
        """Tensors -> arrays; JSON as ``{"predictions": ...}``, other types the bare arrays."""
        if isinstance(prediction, TFSResult):
            return _encode_result(prediction, accept, self.default_response_type)
        return super().encode(to_numpy(prediction), accept)

    def batch_part(self, data: Any) -> tuple[Any, Any] | None:
        """TF Serving's row format (``{"instances": [...]}`` of unnamed rows, or a bare JSON list) as an
        array joins others; named inputs, ``"inputs"`` (columnar) and ``signature_name`` stay alone."""
        if isinstance(data, Mapping):
            if set(data) != {"instances"} or not isinstance(data["instances"], list):
                return None
            data = data["instances"]
        if isinstance(data, list):
            if any(isinstance(row, Mapping) for row in data):
                return None
            try:
                data = np.asarray(data)
            except ValueError:  # ragged rows: predicted alone, where the model says what is wrong
                return None
        return super().batch_part(data)

    def predict(self, model: Any, data: Any) -> Any:
        """Run the signature (or Keras model) on ``data``; input errors -> 400."""
        import tensorflow as tf

        signature_name = SERVING_DEFAULT
        if isinstance(data, Mapping) and "signature_name" in data:
            data = dict(data)
            signature_name = str(data.pop("signature_name"))
        inputs = _request_inputs(data)
        limits = self.options.decode_limits()
        try:
            if _is_keras_model(model):
                return to_numpy(_call_keras(model, inputs, limits))
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
            return to_numpy(_call_signature(fn, inputs, limits))
        except (BadRequestError, PredictionError):
            raise
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise BadRequestError(f"the model rejected the input: {_tf_message(exc)}") from exc
        except tf.errors.OpError as exc:
            raise PredictionError(f"the model failed: {type(exc).__name__}: {_tf_message(exc)}") from exc

    def unload(self, model: Any) -> None:
        """Stop the model's REST server, close TF1 sessions, drop the model and collect."""
        with self._lock:
            servable = self._servables.pop(id(model), None)
        if servable is not None:
            servable.close()
        del model, servable
        gc.collect()


def _load_keras(path: Path) -> Any:
    try:
        import keras

        return keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load keras {path}: {type(exc).__name__}: {_tf_message(exc)} (a custom layer or object needs "
            "code: load it in a model_fn in code/inference.py with custom_objects=...)"
        ) from exc


def _load_version(path: Path, version: int | None) -> tuple[Any, dict[str, str]]:
    what = f"version {version} ({path})" if version is not None else str(path)
    try:
        model, methods = load_saved_model(path)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load saved_model {what}: {type(exc).__name__}: {_tf_message(exc)}") from exc
    signatures = getattr(model, "signatures", {})
    if SERVING_DEFAULT not in signatures:
        if isinstance(model, TF1SavedModel):
            model.close()
        raise ModelLoadError(
            f"SavedModel {what} has no {SERVING_DEFAULT!r} signature (it has: "
            f"{', '.join(signatures) or 'none'}); export it with signatures={{'{SERVING_DEFAULT}': fn}}"
        )
    return model, methods


def _encode_result(result: TFSResult, accept: str | None, default_accept: str) -> tuple[bytes, str]:
    """Classify / regress results are JSON only (TF Serving's response objects)."""
    ranges = codecs.parse_accept(accept) or [default_accept]
    if not any(r in ("application/json", "application/*", codecs.ANY) for r in ranges):
        raise UnsupportedAcceptError(f"classify / regress results are application/json only; Accept was {accept}")
    return TFJSONCodec().encode(result), "application/json"


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


def _as_array(value: Any, dtype: Any, name: str, limits: DecodeLimits) -> Any:
    """``value`` as a NumPy array of the TF ``dtype`` (strings stay objects for tf.string)."""
    try:
        if dtype.name == "string":
            return np.asarray(value, dtype=object)
        return codecs.as_array(value, limits).astype(dtype.as_numpy_dtype)
    except (TypeError, ValueError) as exc:
        raise BadRequestError(f"input {name!r} cannot be read as {dtype.name}: {exc}") from exc


def _call_signature(fn: Any, inputs: Any, limits: DecodeLimits) -> Any:
    import tensorflow as tf

    specs: dict[str, Any] = {}
    structured = getattr(fn, "structured_input_signature", None)
    if structured is not None:
        specs = dict(structured[1])
    if not specs:
        return fn(tf.constant(codecs.as_array(inputs, limits)))
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
    tensors = {n: tf.constant(_as_array(v, specs[n].dtype, n, limits)) for n, v in inputs.items()}
    outputs = fn(**tensors)
    if isinstance(outputs, Mapping) and len(outputs) == 1:
        return next(iter(outputs.values()))
    return outputs


def _call_keras(model: Any, inputs: Any, limits: DecodeLimits) -> Any:
    import tensorflow as tf

    model_inputs = list(model.inputs or [])
    names = [getattr(t, "name", f"input_{i}") for i, t in enumerate(model_inputs)]
    dtypes = [tf.as_dtype(getattr(t, "dtype", "float32")) for t in model_inputs] or [tf.float32]
    if isinstance(inputs, Mapping):
        unknown = [n for n in inputs if n not in names]
        if unknown:
            raise BadRequestError(f"the model takes inputs {', '.join(names)}; unknown {', '.join(map(str, unknown))}")
        arrays: Any = {n: _as_array(v, dtypes[names.index(n)], n, limits) for n, v in inputs.items()}
    else:
        if len(model_inputs) > 1:
            raise BadRequestError(
                f"the model takes several inputs ({', '.join(names)}); send {{\"inputs\": {{\"<name>\": ...}}}}"
            )
        arrays = _as_array(inputs, dtypes[0], names[0] if names else "input", limits)
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
