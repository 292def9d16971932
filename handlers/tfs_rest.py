"""TF Serving's REST API, answered in-process from a model the TensorFlow handler loaded.

servekit has no ``tensorflow_model_server``: the model runs in TensorFlow inside the worker. This
module gives a loaded model TF Serving's request surface anyway, because AWS's TF Serving container
scripts are written against it (https://www.tensorflow.org/tfx/serving/api_rest):

* ``Servable``: every loaded version of one model, the default (highest) version, and version
  selection by ``tfs-model-version``;
* ``parse_tfs_attributes``: the ``tfs-*`` keys of ``X-Amzn-SageMaker-Custom-Attributes``;
* ``rest_post`` / ``rest_status``: ``POST /v1/models/<name>[/versions/<v>]:predict|classify|regress``
  and ``GET /v1/models/<name>[/versions/<v>]`` as JSON in, (status, JSON) out;
* ``RestServer``: the same on a loopback HTTP port, so ``context.rest_uri`` is a real URL.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from handlers import codecs
from handlers.errors import BadRequestError, HandlerError, PredictionError

logger = logging.getLogger("servekit.handlers.tensorflow")

SERVING_DEFAULT = "serving_default"
METHODS = ("predict", "classify", "regress")

# AWS's tfs_utils.parse_tfs_custom_attributes and tensorflowServing.js find ``tfs-[a-z-]+=[^,]+``
# anywhere in the header (comma-separated). A semicolon also ends a value here, so the common
# ``key=value;key=value`` style of Custom-Attributes works too.
_TFS_ATTRIBUTE = re.compile(r"(tfs-[a-z-]+)=([^,;]+)")


def parse_tfs_attributes(header: str | None) -> dict[str, str]:
    """``'tfs-model-version=2, tfs-method=predict'`` -> ``{'tfs-model-version': '2', 'tfs-method': 'predict'}``."""
    return {key: value.strip() for key, value in _TFS_ATTRIBUTE.findall(header or "")}


class UnknownServableError(BadRequestError):
    """A model name or version the model does not have: 400 on /invocations, 404 on the REST API.

    TF Serving answers 404 (NOT_FOUND). On SageMaker's invocation path servekit answers 400: a 404
    from a multi-model endpoint's invoke means "model not loaded" to SageMaker.
    """


def check_method(method: str) -> str:
    if method not in METHODS:
        raise BadRequestError(f"tfs-method={method} is not one of {', '.join(METHODS)}")
    return method


@dataclass
class Servable:
    """The loaded versions of one model (``{}`` for an unversioned artifact) and what serves them."""

    default: Any
    versions: dict[int, Any] = field(default_factory=dict)
    #: ``{version or None: {signature: method name}}`` as the SavedModel declares them.
    methods: dict[int | None, dict[str, str]] = field(default_factory=dict)
    #: Names the model answers to: its ``<name>/<version>`` directory, and the names requests used.
    names: set[str] = field(default_factory=set)
    closers: list[Callable[[], None]] = field(default_factory=list)
    rest: RestServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def latest(self) -> int | None:
        return max(self.versions) if self.versions else None

    def select(self, version: str | None) -> tuple[int | None, Any]:
        """(version, model) for a ``tfs-model-version`` value; None means the latest."""
        if version is None:
            return self.latest, self.default
        if not version.isdigit():
            raise UnknownServableError(f"tfs-model-version={version} is not a version number")
        number = int(version)
        if number not in self.versions:
            have = ", ".join(map(str, sorted(self.versions))) or "none: the artifact has no version directories"
            raise UnknownServableError(f"the model has no version {version} (versions: {have})")
        return number, self.versions[number]

    def check_name(self, name: str | None) -> None:
        if name is not None and name not in self.names:
            raise UnknownServableError(
                f"tfs-model-name={name} does not name this model (it serves {', '.join(sorted(self.names))})"
            )

    def rest_server(self, predict: Callable[[Any, Any], Any], port_range: tuple[int, int] | None = None) -> RestServer:
        """The loopback REST server for this model, started on first use."""
        with self.lock:
            if self.rest is None:
                self.rest = RestServer(self, predict, port_range)
            return self.rest

    def close(self) -> None:
        with self.lock:
            server, self.rest = self.rest, None
        if server is not None:
            server.close()
        for close in self.closers:
            close()


class TFSResult(dict[str, Any]):
    """A TF Serving response object (``{"results": ...}``) that JSON-encodes as is."""


# ---- the REST API as functions --------------------------------------------------------------------


def rest_post(servable: Servable, predict: Callable[[Any, Any], Any], name: str, version: str | None,
              method: str, body: bytes | str) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """TF Serving's ``POST /v1/models/<name>[/versions/<version>]:<method>``: (HTTP status, JSON object)."""
    try:
        servable.check_name(name)
        number, model = servable.select(version)
        check_method(method)
        payload = _json_object(body)
        if method == "predict":
            return 200, predict_response(payload, predict(model, payload))
        return 200, classify_regress(model, servable.methods.get(number, {}), method, payload)
    except UnknownServableError as exc:
        return 404, {"error": exc.message}
    except HandlerError as exc:
        return exc.status, {"error": exc.message}
    except Exception as exc:
        logger.exception("TF Serving REST %s on model %s failed", method, name)
        return 500, {"error": f"{type(exc).__name__}: {exc}"}


def rest_status(servable: Servable, name: str, version: str | None) -> tuple[int, dict[str, Any]]:
    """TF Serving's ``GET /v1/models/<name>[/versions/<version>]`` (model status)."""
    try:
        servable.check_name(name)
        numbers = [servable.select(version)[0]] if version is not None else sorted(servable.versions)
    except UnknownServableError as exc:
        return 404, {"error": exc.message}
    ok = {"error_code": "OK", "error_message": ""}
    return 200, {"model_version_status": [{"version": str(n), "state": "AVAILABLE", "status": ok}
                                          for n in numbers if n is not None]}  # fmt: skip


def _json_object(body: bytes | str) -> dict[str, Any]:
    try:
        # json.loads' own encoding detection (UTF-8, -16 or -32) for bytes, then the bounded parser.
        text = body if isinstance(body, str) else body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"the request body is not JSON: {exc}") from exc
    payload = codecs.parse_json(text)
    if not isinstance(payload, dict):
        raise BadRequestError("the request body must be a JSON object (TF Serving's REST API)")
    return payload


def predict_response(payload: Mapping[str, Any], prediction: Any) -> dict[str, Any]:
    """TF Serving's answer: row format (``instances``) -> ``predictions``, columnar (``inputs``) -> ``outputs``."""
    if ("instances" in payload) == ("inputs" in payload):
        raise BadRequestError("a predict request needs exactly one of 'instances' (rows) and 'inputs' (columns)")
    if "instances" in payload:
        return {"predictions": prediction_rows(prediction)}
    if isinstance(prediction, Mapping):
        return {"outputs": {str(k): codecs.to_ndarray(v).tolist() for k, v in prediction.items()}}
    return {"outputs": prediction}


def prediction_rows(prediction: Any) -> Any:
    """Several named outputs sharing a batch size -> one object per row (TF Serving's row format)."""
    if isinstance(prediction, Mapping):
        arrays = {str(k): codecs.to_ndarray(v) for k, v in prediction.items()}
        sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
        if len(sizes) == 1 and None not in sizes:
            count = sizes.pop()
            return [{k: a[i].tolist() for k, a in arrays.items()} for i in range(count or 0)]
        return {k: a.tolist() for k, a in arrays.items()}
    return prediction


# ---- classify / regress ---------------------------------------------------------------------------


def classify_regress(model: Any, methods: Mapping[str, str], method: str, payload: Mapping[str, Any]) -> TFSResult:
    """TF Serving's Classify / Regress API: ``examples`` (plus shared ``context``) as tf.Examples."""
    import tensorflow as tf

    name = str(payload.get("signature_name", SERVING_DEFAULT))
    signatures = getattr(model, "signatures", None) or {}
    if name not in signatures:
        raise BadRequestError(f"the model has no signature {name!r} for {method}")
    declared = methods.get(name, "tensorflow/serving/predict")
    if declared != f"tensorflow/serving/{method}":
        raise BadRequestError(
            f"signature {name!r} is a {declared} signature; {method} needs tensorflow/serving/{method}"
        )
    examples = payload.get("examples")
    if not isinstance(examples, list) or not examples:
        raise BadRequestError(f"a {method} request needs a non-empty 'examples' list")
    shared = payload.get("context") or {}
    serialized = [_example({**shared, **_mapping(ex)}).SerializeToString() for ex in examples]
    fn = signatures[name]
    input_key = next(iter(fn.structured_input_signature[1]))
    outputs = {k: np.asarray(v) for k, v in fn(**{input_key: tf.constant(serialized)}).items()}
    if method == "regress":
        return TFSResult(results=outputs["outputs"].reshape(len(examples), -1)[:, 0].tolist())
    return TFSResult(results=_classifications(outputs, len(examples)))


def _mapping(example: Any) -> Mapping[str, Any]:
    if not isinstance(example, Mapping):
        raise BadRequestError("each example must be a JSON object of feature name -> value(s)")
    return example


def _example(features: Mapping[str, Any]) -> Any:
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature={k: _feature(k, v) for k, v in features.items()}))


def _feature(name: str, value: Any) -> Any:
    import tensorflow as tf

    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, (str, dict)) for v in values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[_bytes(name, v) for v in values]))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    raise BadRequestError(f"feature {name!r} must be numbers, strings or {{'b64': ...}} values")


def _bytes(name: str, value: str | dict[str, Any]) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if set(value) != {"b64"}:
        raise BadRequestError(f"feature {name!r}: an object value must be {{'b64': '<base64>'}}")
    return base64.b64decode(value["b64"])


def _classifications(outputs: Mapping[str, np.ndarray], count: int) -> list[list[list[Any]]]:
    """Per example ``[[label, score], ...]`` (TF Serving's classify result)."""
    classes = outputs.get("classes")
    scores = outputs.get("scores")
    if classes is None and scores is None:
        raise BadRequestError("the classify signature has neither a 'classes' nor a 'scores' output")
    rows: list[list[list[Any]]] = []
    for i in range(count):
        labels = [] if classes is None else [codecs.to_builtin(c) for c in np.ravel(classes[i])]
        values = [] if scores is None else [float(s) for s in np.ravel(scores[i])]
        width = max(len(labels), len(values))
        rows.append([[labels[j] if j < len(labels) else str(j), values[j] if j < len(values) else None]
                     for j in range(width)])  # fmt: skip
    return rows


# ---- the loopback HTTP server ---------------------------------------------------------------------

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?::(?P<method>[A-Za-z]+))?$")


class RestServer:
    """TF Serving's REST API for one servable on 127.0.0.1, on a free port of ``port_range``
    (SAGEMAKER_SAFE_PORT_RANGE, passed in through HandlerOptions), else a port the OS assigns.
    """

    def __init__(self, servable: Servable, predict: Callable[[Any, Any], Any],
                 port_range: tuple[int, int] | None = None) -> None:  # fmt: skip
        self._httpd = _bind(_request_handler(servable, predict), port_range)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="servekit-tfs-rest", daemon=True
        )
        self._thread.start()
        logger.info("TF Serving REST API for in-process model on http://127.0.0.1:%d", self.port)

    def uri(self, name: str, version: int | None, method: str | None = None) -> str:
        path = f"http://127.0.0.1:{self.port}/v1/models/{name}"
        if version is not None:
            path += f"/versions/{version}"
        return f"{path}:{method}" if method else path

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _bind(handler: type[BaseHTTPRequestHandler], port_range: tuple[int, int] | None) -> ThreadingHTTPServer:
    """A server on 127.0.0.1: the first free port of ``port_range`` in random order (workers of one
    container pick apart), or port 0; ``PredictionError`` naming the range when all are taken."""
    if port_range is None:
        return ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ports = list(range(port_range[0], port_range[1] + 1))
    random.shuffle(ports)
    for port in ports:
        try:
            return ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError:
            continue
    raise PredictionError(
        f"no free port in SAGEMAKER_SAFE_PORT_RANGE={port_range[0]}-{port_range[1]} for the TF Serving REST "
        "API behind context.rest_uri"
    )


def _request_handler(servable: Servable, predict: Callable[[Any, Any], Any]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            route = _PATH.match(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if route is None or route["method"] is None:
                self._send(404, {"error": f"no TF Serving REST route POST {self.path}"})
                return
            self._send(*rest_post(servable, predict, route["name"], route["version"], route["method"], body))

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            route = _PATH.match(self.path)
            if route is None or route["method"] is not None:
                self._send(404, {"error": f"no TF Serving REST route GET {self.path} (servekit answers model status)"})
                return
            self._send(*rest_status(servable, route["name"], route["version"]))

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, default=codecs.to_builtin).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            logger.debug("TF Serving REST: " + format, *args)

    return Handler


__all__ = [
    "METHODS",
    "RestServer",
    "Servable",
    "TFSResult",
    "UnknownServableError",
    "check_method",
    "parse_tfs_attributes",
    "predict_response",
    "prediction_rows",
    "rest_post",
    "rest_status",
]
