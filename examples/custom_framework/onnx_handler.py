"""ONNX Runtime handler: a framework servekit does not ship, added as one module.

Register it with ``SERVE_FRAMEWORK=onnx_handler:OnnxHandler`` (this file importable as
``onnx_handler``). Everything else -- single-model and multi-model serving, the user script
(``code/inference.py``), the JSON / CSV / NPY / NPZ / JSON Lines codecs, error statuses -- comes from
servekit's ``Handler`` base and server.

Artifact layout: ``model.onnx`` at the artifact's root, else the only ``*.onnx`` file. Weights saved as
ONNX external data (``model.onnx.data`` beside it) are found relative to the model file.

Input: the codecs decode the body (the base class's ``decode``); ``predict`` turns that into a *feed
dict* ``{input_name: ndarray}`` cast to the dtypes the model declares (``to_feeds``, which a user's
``predict_fn`` can call too):

* one model input: the whole body is that input -- a JSON list of rows, CSV rows, an NPY array, or
  TF Serving's ``{"instances": ...}`` / ``{"inputs": ...}``. A single record (one dimension short
  of the input's rank, e.g. a flat list of features) gets a batch axis.
* several model inputs: a JSON object or an NPZ file with one entry per input name; or a 2-D table
  (JSON rows or CSV) whose columns are the inputs, when every input is one column (``[None, 1]``,
  what skl2onnx makes of a DataFrame with a ``ColumnTransformer``).

Output: the model's only output as an array; with several outputs a dict ``{output_name: value}``
(JSON encodes it; CSV cannot carry several outputs and answers 406 -- pick one in a ``predict_fn``).
A scikit-learn classifier converted with skl2onnx has the outputs ``label`` and ``probabilities``
(``zipmap=False``) or ``output_label`` and ``output_probability`` (a list of ``{class: p}``).

The framework is imported inside the methods, never at module level: the server's front process
imports this module only to read the class attributes, and must stay framework-free.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from handlers.artifacts import only_file
from handlers.base import Handler
from handlers.errors import BadRequestError, ModelLoadError

#: ONNX tensor element types -> numpy dtypes (``NodeArg.type`` reads e.g. ``tensor(float)``).
ONNX_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64,
    "tensor(uint32)": np.uint32,
    "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}


def find_model_file(model_dir: str | Path) -> Path:
    """``model.onnx``, else the only ``*.onnx`` in ``model_dir`` (``ModelLoadError`` naming what is missing)."""
    root = Path(model_dir)
    if (root / "model.onnx").is_file():
        return root / "model.onnx"
    found = only_file(root, ("*.onnx",), "name the one to serve model.onnx")
    if found is not None:
        return found
    raise ModelLoadError(
        f"model artifact {root} has no model.onnx or other *.onnx file; save the converted model as "
        "model.onnx at the artifact's root (skl2onnx: open('model.onnx', 'wb').write(onx.SerializeToString()))"
    )


def _unwrap(data: Any) -> Any:
    """TF Serving style ``{"instances": x}`` / ``{"inputs": x}`` -> ``x``; a DataFrame -> its values."""
    while isinstance(data, Mapping) and len(data) == 1 and next(iter(data)) in ("instances", "inputs"):
        data = next(iter(data.values()))
    if hasattr(data, "to_numpy") and hasattr(data, "columns"):  # pandas DataFrame (CSV with header)
        data = data.to_numpy()
    return data


def _cast(value: Any, node: Any) -> np.ndarray:
    """``value`` as an ndarray of the input's dtype, with a batch axis added to a single record."""
    dtype = ONNX_DTYPES.get(node.type)
    if dtype is None:
        raise BadRequestError(f"model input {node.name!r} has type {node.type}, which this handler cannot feed; "
                              "build the input in an input_fn in code/inference.py")
    try:
        arr = np.asarray(value)
        if dtype is object:
            arr = arr.astype(str).astype(object)  # ONNX strings: an object array of str
        else:
            arr = arr.astype(dtype, casting="unsafe")
    except (TypeError, ValueError) as exc:
        raise BadRequestError(f"model input {node.name!r} needs {node.type} values: {exc}") from exc
    rank = len(node.shape) if isinstance(node.shape, (list, tuple)) else None
    if rank is not None and arr.ndim == rank - 1:
        arr = arr[np.newaxis, ...]  # one record -> a batch of one
    return arr


def to_feeds(session: Any, data: Any) -> dict[str, np.ndarray]:
    """Decoded request data -> ``{input_name: ndarray}`` for ``session`` (``BadRequestError`` if impossible)."""
    inputs = session.get_inputs()
    names = [node.name for node in inputs]
    data = _unwrap(data)
    if isinstance(data, Mapping):
        missing = [name for name in names if name not in data]
        if missing or len(data) != len(names):
            raise BadRequestError(
                f"the model's inputs are {names}; the request has {sorted(map(str, data))}. Send one entry "
                "per input (a JSON object or an NPZ file)"
            )
        return {node.name: _cast(data[node.name], node) for node in inputs}
    if len(inputs) == 1:
        return {names[0]: _cast(data, inputs[0])}
    # Several inputs and one table: one column per input (skl2onnx's DataFrame conversion).
    try:
        table = np.asarray(data, dtype=object)
    except ValueError as exc:
        raise BadRequestError("the input rows have different lengths; send equally long rows") from exc
    if table.ndim == 1 and len(table) == len(names):
        table = table.reshape(1, -1)  # a single row
    if table.ndim != 2 or table.shape[1] != len(names):
        raise BadRequestError(
            f"the model has {len(names)} inputs {names}; send rows of {len(names)} columns (JSON or CSV) "
            "or one entry per input name (a JSON object or an NPZ file)"
        )
    return {node.name: _cast(table[:, [i]].tolist(), node) for i, node in enumerate(inputs)}


def _plain(value: Any) -> Any:
    """ONNX Runtime's output values made encodable: a sequence of maps -> list of ``{str: float}``."""
    if isinstance(value, list):
        return [{str(k): float(v) for k, v in item.items()} if isinstance(item, dict) else item for item in value]
    return value


class OnnxHandler(Handler):
    """ONNX Runtime on CPU (``SERVE_FRAMEWORK=onnx_handler:OnnxHandler``).

    Subclass and change the class attributes to tune it, e.g. more intra-op threads for a large
    network served as a single model.
    """

    name: ClassVar[str] = "onnx"
    # Imported once in the server's fork parent: each model's worker then starts with ONNX Runtime
    # already loaded (about 75 MB of shared library pages it does not pay for again).
    preload_modules: ClassVar[tuple[str, ...]] = ("numpy", "onnxruntime")
    # Importing onnxruntime starts no thread pool (each InferenceSession makes its own, in the
    # worker that loads the model), and it uses no OpenMP runtime, so forking after the import is
    # safe. Measured: 6 sessions in forkserver children preloaded with onnxruntime 1.32 all answered.
    fork_safe: ClassVar[bool] = True
    # One intra-op thread per session and two worker processes in single-model mode: the small
    # tabular models this example targets gain nothing from threads inside one request, and on an
    # MME each loaded model would otherwise start a pool of one thread per core.
    default_workers: ClassVar[int] = 2
    intra_op_threads: ClassVar[int] = 1
    providers: ClassVar[tuple[str, ...]] = ("CPUExecutionProvider",)

    def session_options(self) -> Any:
        """The ``onnxruntime.SessionOptions`` every session of this handler gets."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        # Idle pool threads spin for a while after each run by default: with many models on a few
        # cores that burns CPU the busy models need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def _session(self, source: str | bytes, what: str) -> Any:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(source, self.session_options(), providers=list(self.providers))
        except Exception as exc:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelLoadError(
                f"ONNX Runtime {ort.__version__} cannot load {what}: {type(exc).__name__}: {message}. "
                "Export a valid ONNX model with an opset this ONNX Runtime supports"
            ) from exc

    def load(self, model_dir: str) -> Any:
        """An ``onnxruntime.InferenceSession`` for the artifact's ONNX file."""
        path = find_model_file(model_dir)
        return self._session(str(path), str(path))

    def prepare(self, model: Any) -> Any:
        """A ``model_fn`` may return a session, a path to an ``.onnx`` file or the model's bytes."""
        if isinstance(model, (bytes, bytearray)):
            return self._session(bytes(model), "the model bytes model_fn returned")
        if isinstance(model, (str, os.PathLike)):
            return self._session(os.fspath(model), os.fspath(model))
        return model

    def predict(self, model: Any, data: Any) -> Any:
        """Run the session on ``data`` (feed dict, array, rows); the only output, or ``{name: output}``."""
        feeds = to_feeds(model, data)
        try:
            outputs = model.run(None, feeds)
        except Exception as exc:
            kind = type(exc).__name__
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else kind
            if kind == "InvalidArgument":  # wrong rank, shape or type: the request is at fault
                raise BadRequestError(f"the ONNX model rejected the input: {text}") from exc
            raise
        if len(outputs) == 1:
            return _plain(outputs[0])
        return {node.name: _plain(value) for node, value in zip(model.get_outputs(), outputs, strict=True)}

    def unload(self, model: Any) -> None:
        """Drop the session; its arena and thread pool go with it."""
        del model
        gc.collect()
