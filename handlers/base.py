"""The per-artifact contract every framework handler meets.

A ``Handler`` knows one framework: how to load an extracted model artifact directory, how to run a
prediction, how to release a model, and its default codecs. It never knows HTTP or processes.
``handlers.model.ServedModel`` wraps a handler plus the artifact's optional user script
(``code/inference.py``) into the object a server worker holds: ``invoke(Request) -> Response``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from handlers.limits import DEFAULT_MAX_DECODED_BYTES, DecodeLimits

if TYPE_CHECKING:
    from handlers.codecs.registry import CodecRegistry


@dataclass(frozen=True)
class HandlerOptions:
    """Settings a handler needs, passed in by the server (handlers read no environment variables)."""

    # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT as the user set it; None: the handler's own ``default_accept``.
    # The user's explicit setting wins over the handler's default (``Handler.default_response_type``).
    default_accept: str | None = None
    # SAGEMAKER_PROGRAM: the user module inside the code directory (".py" optional); None: inference.py
    # when present. A configured program must exist (handlers.model.find_script).
    program: str | None = None
    # SAGEMAKER_SUBMIT_DIRECTORY: a directory, .tar.gz or s3:// URI holding the user script when it is
    # not in <model_dir>/code (handlers.submit_directory).
    submit_directory: str | None = None
    # pip-install <code>/requirements.txt at load time when present.
    install_requirements: bool = True
    # Most bytes decoding one request may allocate (arrays, decompressed NPZ members); beyond it 413.
    # A server sets handlers.limits.max_decoded_bytes_for(its max payload); default 16 x 6 MiB.
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    # SAGEMAKER_SAFE_PORT_RANGE: any port a handler opens (TensorFlow's loopback TF Serving REST API)
    # comes from it, so containers sharing a host network never collide; None: a port the OS assigns.
    safe_port_range: tuple[int, int] | None = None

    def decode_limits(self) -> DecodeLimits:
        """The bounds every codec and array conversion of a request runs under."""
        return DecodeLimits(max_bytes=self.max_decoded_bytes)


@dataclass(frozen=True)
class Request:
    """One invocation as the handler sees it: bytes plus the headers SageMaker forwards."""

    body: bytes
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    target_model: str | None = None
    model_name: str = "model"


class ChunkStream(Protocol):
    """The chunks of a streamed answer after its first: non-empty bytes, each produced when pulled."""

    def __next__(self) -> bytes:
        """The next chunk; StopIteration at the end, ``StreamError`` when producing it failed."""

    def close(self) -> None:
        """Stop producing (the user's generator runs its ``finally`` blocks)."""


@dataclass
class Response:
    """The encoded prediction; ``custom_attributes`` is set by user code when it wants one returned.

    A streamed answer (the user script or handler returned an iterator, docs/handlers.md "Streaming")
    carries its first chunk as ``body`` and the rest as ``chunks``: non-empty ``bytes``, produced as
    they are pulled; ``StreamError`` when producing one fails. Whoever holds it must close it."""

    body: bytes
    content_type: str
    custom_attributes: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunks: ChunkStream | None = None


#: A framework's own user-script contract turned into one call: ``(model, request) -> Response``.
ScriptInvoker = Callable[[Any, Request], Response]


class Handler(ABC):
    """One framework's implementation of the MME per-artifact contract.

    Subclasses set the class attributes and implement ``load`` and ``predict``. ``unload`` and the
    codecs have defaults. A custom framework is one module with one subclass, named to the server as
    ``SERVE_FRAMEWORK=package.module:Class``.
    """

    #: Framework name used in logs and ``SERVE_FRAMEWORK``.
    name: ClassVar[str] = "custom"
    #: Modules imported once in the server's fork parent so each model's worker starts warm and
    #: shares their memory. Import the framework lazily in the handler module itself: the server's
    #: front process imports the module to read these attributes and must stay framework-free.
    preload_modules: ClassVar[tuple[str, ...]] = ()
    #: False when forking after importing the framework is never safe; the server then spawns fresh
    #: worker processes instead. For hazards that depend on state, override ``fork_hazard``.
    fork_safe: ClassVar[bool] = True
    #: Single-model mode's default number of worker processes (SAGEMAKER_MODEL_SERVER_WORKERS overrides).
    default_workers: ClassVar[int] = 1
    #: The response type for a request whose Accept is missing or ``*/*``. SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT,
    #: when the user sets it, wins. AWS's first-party algorithm containers are reported to answer ``text/csv``
    #: here (docs/sagemaker-contract.md §1.8). Must be a type the handler's codecs can answer (checked at load).
    default_accept: ClassVar[str] = "application/json"
    #: What a request without a Content-Type is read as; None: such a request is refused with 415.
    #: Must be a type the handler's codecs can read (checked at load).
    default_content_type: ClassVar[str | None] = None

    @classmethod
    def fork_hazard(cls) -> str | None:
        """Called first thing in a freshly forked worker: why this fork is unsafe, or None.

        A reason makes the server log it and spawn fresh workers from then on (e.g. a CUDA context
        created in the fork parent cannot be used by a forked child).
        """
        return None if cls.fork_safe else f"{cls.__name__} declares fork_safe = False"

    def __init__(self, options: HandlerOptions | None = None) -> None:
        self.options = options or HandlerOptions()

    @property
    def default_response_type(self) -> str:
        """The type a missing or ``*/*`` Accept means: the user's SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT,
        else this handler's ``default_accept``."""
        return self.options.default_accept or self.default_accept

    def codec_registry(self) -> CodecRegistry:
        """The codecs ``decode`` / ``encode`` use (default: ``handlers.codecs.REGISTRY``). A handler whose
        ``decode`` / ``encode`` use other codecs returns those, so its declared defaults can be checked."""
        from handlers import codecs

        return codecs.REGISTRY

    @abstractmethod
    def load(self, model_dir: str) -> Any:
        """Load the artifact extracted at ``model_dir``; raise ``ModelLoadError`` naming what is missing."""

    @abstractmethod
    def predict(self, model: Any, data: Any) -> Any:
        """Run the model on decoded ``data``; raise ``BadRequestError`` when the input is at fault."""

    def prepare(self, model: Any) -> Any:
        """Finish a model built by the user's ``model_fn`` (e.g. move it to the device); default: as is."""
        return model

    def predict_request(self, model: Any, data: Any, request: Request) -> Any:
        """``predict`` with the request at hand, for frameworks whose prediction depends on request
        attributes (e.g. TensorFlow's ``tfs-model-version`` in Custom-Attributes); default: ``predict``."""
        return self.predict(model, data)

    # ---- batching (docs/handlers.md, "Batching") ------------------------------------------------------
    def batch_part(self, data: Any) -> tuple[Any, Any] | None:
        """Decoded ``data`` as rows to join with other requests' rows: ``(key, rows)``, where only rows of
        equal keys are joined; None: predicted alone. Default: a numeric NumPy array of one or more
        dimensions, keyed by its trailing shape and dtype (so joining never changes a value's type)."""
        import numpy as np

        if isinstance(data, np.ndarray) and data.ndim >= 1 and data.dtype.kind in "biuf":
            return ("ndarray", data.shape[1:], data.dtype.str), data
        return None

    def join(self, parts: list[Any]) -> Any:
        """``batch_part``'s rows of several requests (equal keys) as one input, in order."""
        import numpy as np

        return np.concatenate(parts)

    def split(self, prediction: Any, rows: list[int]) -> list[Any] | None:
        """The joined input's ``prediction`` cut back into one per request (``rows`` each); None when it
        does not have one row per input row. Default: an array, or a mapping of arrays (named outputs)."""
        import numpy as np

        total = sum(rows)
        ends = np.cumsum(rows)[:-1]
        if isinstance(prediction, np.ndarray) and prediction.ndim >= 1 and len(prediction) == total:
            return list(np.split(prediction, ends))
        if isinstance(prediction, dict) and prediction and all(
                isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == total for v in prediction.values()):
            cut = {k: np.split(v, ends) for k, v in prediction.items()}
            return [{k: pieces[i] for k, pieces in cut.items()} for i in range(len(rows))]
        return None

    def script_invoker(self, script: ModuleType, path: Path) -> ScriptInvoker | None:
        """The framework's own user-script contract, when ``script`` follows it instead of
        sagemaker-inference's (``model_fn`` / ``input_fn`` / ``predict_fn`` / ``output_fn``).

        Example: AWS's TensorFlow Serving container runs ``input_handler`` / ``output_handler`` or
        ``handler``. Return a callable that serves a whole request with the loaded model, or None when
        ``script`` defines none of the framework's own functions (the default).
        """
        return None

    def unload(self, model: Any) -> None:  # noqa: B027 - optional hook
        """Release what ``model`` holds (files, sessions, device memory)."""

    def decode(self, body: bytes, content_type: str | None) -> Any:
        """Request bytes + Content-Type -> model input (default: ``codec_registry()``). A missing
        Content-Type arrives here already replaced by ``default_content_type`` when one is declared."""
        return self.codec_registry().decode(body, content_type, self.options.decode_limits())

    def encode(self, prediction: Any, accept: str | None) -> tuple[bytes, str]:
        """Prediction + Accept -> (bytes, Content-Type) (default: ``codec_registry()``)."""
        return self.codec_registry().encode(prediction, accept, self.default_response_type)
