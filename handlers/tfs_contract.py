"""AWS's TF Serving container script contract: ``handler`` or ``input_handler`` / ``output_handler``.

AWS's container (github.com/aws/sagemaker-tensorflow-serving-container, docker/build_artifacts/
sagemaker/python_service.py and tfs_utils.py; today's copy lives in aws/deep-learning-containers)
imports ``code/inference.py`` and serves each request with, in this order of precedence:

* ``handler(data, context)`` -- the whole request; scripts usually ``requests.post(context.rest_uri, ...)``;
* ``input_handler(data, context)`` -> a TF Serving REST request body, which the container posts to
  ``context.rest_uri``, then ``output_handler(response, context)`` with the ``requests.Response``.

Either returns ``(body, content_type)``. ``data`` is the request body stream (scripts call
``data.read()``), ``context`` a namedtuple (see ``TFSContext``). A script with only one of
``input_handler`` / ``output_handler`` is refused at load, as AWS's container refuses it
(``NotImplementedError`` at start): a script that would fail on AWS must fail here too.

servekit differs in where the prediction runs: ``input_handler``'s request is answered in-process by
``handlers.tfs_rest`` (no HTTP round trip), and ``context.rest_uri`` points at a loopback server in
the worker answering TF Serving's REST API from the same model. There is no gRPC API.
"""

from __future__ import annotations

import io
import json
import logging
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from handlers import codecs
from handlers.base import Request, Response
from handlers.errors import ModelLoadError, PredictionError
from handlers.tfs_rest import Servable, check_method, parse_tfs_attributes, rest_post

logger = logging.getLogger("servekit.handlers.tensorflow")

#: The functions of AWS's contract.
CONTRACT_FUNCTIONS = ("handler", "input_handler", "output_handler")

# AWS's tfs_utils defaults for a missing Content-Type / Accept.
DEFAULT_CONTENT_TYPE = "application/json"
DEFAULT_ACCEPT = "application/json"

GRPC_MESSAGE = (
    "servekit has no TF Serving gRPC API (prediction runs in TensorFlow inside the worker); "
    "post TF Serving REST requests to context.rest_uri instead"
)


class _NoGrpc:
    """``context.grpc_port`` / ``grpc_uri`` / ``channel``: fails with one clear line wherever a script uses it."""

    def __repr__(self) -> str:
        return "<no gRPC in servekit>"

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(GRPC_MESSAGE)

    __str__ = __format__ = __int__ = __index__ = __call__ = _fail

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(GRPC_MESSAGE)


NO_GRPC = _NoGrpc()

_ContextFields = namedtuple(
    "_ContextFields",
    "model_name, model_version, method, rest_uri, grpc_port, channel, "
    "custom_attributes, request_content_type, accept_header, content_length",
)


class TFSContext(_ContextFields):
    """The ``context`` of AWS's TF Serving scripts: the namedtuple fields of AWS's ``tfs_utils.Context``.

    ``model_name`` is the served model's name (AWS leaves it None in single-model mode unless
    ``tfs-model-name`` is given); ``model_version`` the requested ``tfs-model-version`` or None;
    ``method`` the ``tfs-method`` (default ``predict``); ``rest_uri`` a live loopback URL.
    ``grpc_port``, ``channel`` and ``grpc_uri`` raise ``NotImplementedError`` when used.
    """

    __slots__ = ()

    @property
    def grpc_uri(self) -> Any:
        return NO_GRPC


class TFServingResponse:
    """What ``output_handler`` receives: the parts of ``requests.Response`` AWS's scripts use."""

    def __init__(self, status_code: int, payload: dict[str, Any], url: str) -> None:
        self.status_code = status_code
        self.content = json.dumps(payload, default=codecs.to_builtin).encode("utf-8")
        self.url = url
        self.headers = {"Content-Type": "application/json"}
        self.encoding = "utf-8"
        self.reason = "OK" if status_code < 400 else "Error"

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")

    def json(self, **kwargs: Any) -> Any:
        return json.loads(self.content, **kwargs)

    def raise_for_status(self) -> None:
        if self.ok:
            return
        message = f"{self.status_code} Error for url: {self.url}: {self.text}"
        try:
            import requests
        except ImportError:
            raise OSError(message) from None
        raise requests.HTTPError(message, response=self)

    def __repr__(self) -> str:
        return f"<TFServingResponse [{self.status_code}]>"


# ---- the invoker ------------------------------------------------------------------------------------


def find_contract(script: ModuleType, path: Path) -> dict[str, Callable[..., Any]]:
    """The contract functions ``script`` defines (``ModelLoadError`` when one is not callable)."""
    found = {}
    for name in CONTRACT_FUNCTIONS:
        value = getattr(script, name, None)
        if value is None:
            continue
        if not callable(value):
            raise ModelLoadError(f"{name} in {path} is not a function")
        found[name] = value
    return found


class ContractInvoker:
    """Serves one request the AWS TF Serving way; ``servable`` maps the loaded model to its versions."""

    def __init__(self, functions: dict[str, Callable[..., Any]], path: Path,
                 servable: Callable[[Any], Servable], predict: Callable[[Any, Any], Any],
                 port_range: tuple[int, int] | None = None) -> None:  # fmt: skip
        self.handler = functions.get("handler")
        self._servable = servable
        self._predict = predict
        self._port_range = port_range
        halves = [n for n in ("input_handler", "output_handler") if n in functions]
        if self.handler is not None:
            if halves:
                logger.warning("%s defines handler; %s ignored (as in AWS's container)", path, ", ".join(halves))
        elif len(halves) == 1:
            missing = ({"input_handler", "output_handler"} - set(halves)).pop()
            raise ModelLoadError(
                f"{path} defines {halves[0]} but no {missing}; AWS's TF Serving container refuses such a "
                "script: define both, or handler(data, context)"
            )
        self.input_handler = functions.get("input_handler")
        self.output_handler = functions.get("output_handler")

    def __call__(self, model: Any, request: Request) -> Response:
        servable = self._servable(model)
        context = self._context(servable, request)
        data = io.BytesIO(request.body)
        if self.handler is not None:
            return _response(self.handler(data, context), context)
        assert self.input_handler is not None and self.output_handler is not None  # checked at load
        body = self.input_handler(data, context)
        status, payload = rest_post(servable, self._predict, context.model_name, context.model_version,
                                    context.method, _body_bytes(body))  # fmt: skip
        response = TFServingResponse(status, payload, context.rest_uri)
        return _response(self.output_handler(response, context), context)

    def _context(self, servable: Servable, request: Request) -> TFSContext:
        attributes = parse_tfs_attributes(request.custom_attributes)
        method = check_method(attributes.get("tfs-method", "predict"))
        version = attributes.get("tfs-model-version")
        name = _model_name(servable, request, attributes.get("tfs-model-name"))
        number = servable.select(version)[0] if version is not None else None
        rest = servable.rest_server(self._predict, self._port_range)
        return TFSContext(
            model_name=name,
            model_version=version,
            method=method,
            rest_uri=rest.uri(name, number, method),
            grpc_port=NO_GRPC,
            channel=NO_GRPC,
            custom_attributes=request.custom_attributes,
            request_content_type=request.content_type or DEFAULT_CONTENT_TYPE,
            accept_header=request.accept or DEFAULT_ACCEPT,
            content_length=len(request.body),
        )


def _model_name(servable: Servable, request: Request, requested: str | None) -> str:
    """The name in ``rest_uri``: the request's model, or ``tfs-model-name`` when it names this model.

    On a multi-model endpoint AWS takes the name from the invoke URL and ignores ``tfs-model-name``.
    """
    with servable.lock:
        servable.names.add(request.model_name)
    if requested is None or request.target_model is not None:
        return request.model_name
    servable.check_name(requested)
    return requested


def _body_bytes(body: Any) -> bytes:
    """``input_handler``'s result as the bytes ``requests.post(data=...)`` would send."""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, dict):
        raise PredictionError(
            "input_handler returned a dict; return the TF Serving request as a JSON string (json.dumps(...)), "
            "as AWS's container posts it as the request body"
        )
    raise PredictionError(f"input_handler returned {type(body).__name__}; return a JSON string or bytes")


def _response(result: Any, context: TFSContext) -> Response:
    """``(body, content_type)`` -> Response; AWS's container assigns exactly these two."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise PredictionError(
            f"the script returned {type(result).__name__}; handler / output_handler must return (body, content_type)"
        )
    body, content_type = result
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not isinstance(body, (bytes, bytearray)):
        raise PredictionError(f"the script returned a {type(body).__name__} body; return bytes or str")
    return Response(body=bytes(body), content_type=str(content_type or context.accept_header))


__all__ = [
    "CONTRACT_FUNCTIONS",
    "ContractInvoker",
    "TFSContext",
    "TFServingResponse",
    "find_contract",
]
