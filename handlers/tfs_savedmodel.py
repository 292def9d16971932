"""SavedModel loading for the TensorFlow handler: TF Serving's version directories, and TF1-format models.

TF Serving (and so AWS's TF Serving container) loads every numeric version directory of a model's
base path and serves the highest by default; AWS's ``find_model_versions`` lists them with leading
zeros removed (``00000123`` is version 123). servekit does the same in the worker.

TF1-format SavedModels (written by ``tf.compat.v1.saved_model.Builder`` / ``simple_save``, which
store no object graph) are loaded the way TF Serving loads every SavedModel: into a graph-mode
``Session`` with the ``serve`` tag. ``tf.saved_model.load`` would re-import the graph into TF2
functions, which breaks old graphs -- e.g. a TF 1.0 ``Placeholder`` whose empty ``shape`` attribute
meant "unknown" (TensorFlow's shape inference only honours that for GraphDef producer versions up to
21) fails with "Shape must be rank 1 but is rank 0" -- and checks inputs against the placeholders'
static shapes, which TF Serving does not do.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from handlers.errors import ModelLoadError

logger = logging.getLogger("servekit.handlers.tensorflow")

SERVE_TAG = "serve"
PREDICT_METHOD = "tensorflow/serving/predict"


def has_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def version_dirs(path: Path) -> dict[int, Path]:
    """``{version: directory}`` for the numeric subdirectories of ``path`` holding a SavedModel.

    ``ModelLoadError`` when two directories name the same version (``1`` and ``001``).
    """
    found: dict[int, Path] = {}
    for entry in sorted(path.iterdir()):
        if not (entry.is_dir() and entry.name.isdigit() and has_saved_model(entry)):
            continue
        number = int(entry.name)
        if number in found:
            raise ModelLoadError(
                f"{path} has two directories for version {number} ({found[number].name}, {entry.name}); keep one"
            )
        found[number] = entry
    return found


def read_saved_model_proto(path: Path) -> Any:
    """The ``SavedModel`` protocol buffer of the SavedModel directory ``path``."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    binary = path / "saved_model.pb"
    if binary.is_file():
        proto.ParseFromString(binary.read_bytes())
    else:
        text_format.Parse((path / "saved_model.pbtxt").read_text(), proto)
    return proto


def serve_meta_graph(proto: Any, path: Path) -> Any:
    """The meta graph tagged ``serve`` (TF Serving's and AWS's tag), else the only one."""
    graphs = list(proto.meta_graphs)
    tagged = [g for g in graphs if SERVE_TAG in g.meta_info_def.tags]
    if tagged:
        return tagged[0]
    if len(graphs) == 1:
        return graphs[0]
    tags = "; ".join(",".join(g.meta_info_def.tags) or "(none)" for g in graphs)
    raise ModelLoadError(f"SavedModel {path} has no meta graph tagged {SERVE_TAG!r} (tags: {tags})")


def signature_methods(meta_graph: Any) -> dict[str, str]:
    """``{signature name: method name}`` (``tensorflow/serving/predict``, ``.../classify``, ``.../regress``)."""
    return {name: sig.method_name or PREDICT_METHOD for name, sig in meta_graph.signature_def.items()}


def is_tf1_format(meta_graph: Any) -> bool:
    """TF2's ``tf.saved_model.save`` writes an object graph; TF1's builders do not."""
    return not (meta_graph.HasField("object_graph_def") and len(meta_graph.object_graph_def.nodes) > 0)


class TF1Signature:
    """One SignatureDef of a session-loaded TF1 SavedModel, called like a TF2 signature function.

    ``structured_input_signature`` has TF2's shape, ``((), {input key: TensorSpec})``, so the handler
    treats both formats alike; a call takes keyword arguments by input key and returns
    ``{output key: ndarray}``.
    """

    def __init__(self, model: TF1SavedModel, name: str, signature_def: Any) -> None:
        import tensorflow as tf

        self.name = name
        self.method_name = signature_def.method_name or PREDICT_METHOD
        self._model = model
        self._inputs = {key: info.name for key, info in signature_def.inputs.items()}
        self._outputs = {key: info.name for key, info in signature_def.outputs.items()}
        specs = {}
        for key, info in signature_def.inputs.items():
            shape = None if info.tensor_shape.unknown_rank else [d.size if d.size >= 0 else None
                                                                  for d in info.tensor_shape.dim]  # fmt: skip
            specs[key] = tf.TensorSpec(shape, tf.as_dtype(info.dtype), name=key)
        self.structured_input_signature: tuple[tuple[()], dict[str, Any]] = ((), specs)
        self._callables: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        unknown = [key for key in inputs if key not in self._inputs]
        if unknown:
            raise ValueError(f"signature {self.name!r} has no input {', '.join(unknown)}")
        keys = tuple(sorted(inputs))
        run = self._callable(keys)
        values = run(*[np.asarray(inputs[k]) for k in keys])
        return dict(zip(sorted(self._outputs), values, strict=True))

    def _callable(self, keys: tuple[str, ...]) -> Any:
        # A Session callable feeds tensors the way TF Serving's C++ Session::Run does: without
        # Python's check of each value against the placeholder's static shape (tf.Session.run's).
        # Keras' own TF1 backend built its functions with the same Session method.
        with self._lock:
            run = self._callables.get(keys)
            if run is None:
                from tensorflow.core.protobuf import config_pb2

                options = config_pb2.CallableOptions(
                    feed=[self._inputs[k] for k in keys], fetch=[self._outputs[k] for k in sorted(self._outputs)]
                )
                run = self._model.session._make_callable_from_options(options)
                self._callables[keys] = run
            return run


@dataclass
class TF1SavedModel:
    """A TF1-format SavedModel loaded into its own graph and ``Session`` (as TF Serving loads it)."""

    path: Path
    session: Any
    signatures: dict[str, TF1Signature] = field(default_factory=dict)

    def close(self) -> None:
        self.session.close()


def load_tf1(path: Path, meta_graph: Any) -> TF1SavedModel:
    import tensorflow as tf

    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    try:
        with graph.as_default():
            loaded = tf.compat.v1.saved_model.loader.load(session, list(meta_graph.meta_info_def.tags), str(path))
    except Exception:
        session.close()
        raise
    model = TF1SavedModel(path, session)
    model.signatures = {name: TF1Signature(model, name, sig) for name, sig in loaded.signature_def.items()}
    logger.info("loaded TF1 SavedModel %s into a Session (tags %s)", path, list(meta_graph.meta_info_def.tags))
    return model


def load_saved_model(path: Path) -> tuple[Any, dict[str, str]]:
    """(loaded model, ``{signature: method name}``) for the SavedModel directory ``path``.

    TF1 format: a ``TF1SavedModel``; TF2: ``tf.saved_model.load``'s object. Exceptions propagate for the
    handler to word.
    """
    meta_graph = serve_meta_graph(read_saved_model_proto(path), path)
    methods = signature_methods(meta_graph)
    if is_tf1_format(meta_graph):
        return load_tf1(path, meta_graph), methods
    import tensorflow as tf

    return tf.saved_model.load(str(path)), methods


__all__ = [
    "PREDICT_METHOD",
    "TF1SavedModel",
    "TF1Signature",
    "has_saved_model",
    "load_saved_model",
    "version_dirs",
]
