"""``ServedModel``: one loaded artifact = a framework handler + the artifact's optional user script.

This is the object a server worker holds. ``ServedModel.load(handler, model_dir)`` finds and imports
the user script (``code/inference.py`` by default), installs ``code/requirements.txt`` when asked,
and loads the model with the script's ``model_fn`` or the handler's ``load``. ``invoke(request)`` runs
the sagemaker-inference toolkit's pipeline -- ``input_fn`` -> ``predict_fn`` -> ``output_fn``, or one
``transform_fn`` -- falling back to the handler's ``decode`` / ``predict`` / ``encode`` for every
function the script does not define. Each user function may take one extra trailing ``context``
argument (``handlers.context.Context``), exactly as in the toolkit.

Errors leave ``invoke`` only as ``HandlerError`` subclasses carrying an HTTP status and a one-line
message (no traceback; the traceback goes to the log). An exception with an integer ``status_code``
attribute (the toolkit's ``BaseInferenceToolkitError``) keeps that status.

Per-model code isolation: the script is imported under a unique module name, never as ``inference``,
so two models that each ship ``code/inference.py`` do not clash. Helper modules next to it
(``code/helpers.py``, ``code/mypkg/``) are importable with plain ``import helpers``: while the model's
code runs, its ``code/`` directory is first on ``sys.path`` and its own helper modules are swapped
into ``sys.modules``; afterwards they are swapped out again. The limit: two models whose helper
modules share a name must not run their code at the same time in two threads of one process (the
swap holds a process-wide lock, so such calls are serialized, not mixed up).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib
import importlib.util
import inspect
import itertools
import json
import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from handlers import codecs
from handlers.base import ChunkStream, Handler, HandlerOptions, Request, Response, ScriptInvoker
from handlers.context import CUSTOM_ATTRIBUTES_HEADER, TARGET_MODEL_HEADER, Context
from handlers.errors import BadRequestError, HandlerError, ModelLoadError, PredictionError, StreamError
from handlers.submit_directory import resolve_code_dir

logger = logging.getLogger("servekit.handlers")

#: User functions and the number of arguments each takes before the optional trailing ``context``.
SCRIPT_FUNCTIONS: dict[str, int] = {
    "model_fn": 1,
    "input_fn": 2,
    "predict_fn": 2,
    "output_fn": 2,
    "transform_fn": 4,
    "pre_model_fn": 1,
    "model_warmup_fn": 2,
}

#: The user script's file name when SAGEMAKER_PROGRAM is not set (the SageMaker SDK's convention).
DEFAULT_PROGRAM = "inference.py"

#: The sagemaker-inference functions that serve a request (a framework's own script contract replaces them).
REQUEST_FUNCTIONS = ("input_fn", "predict_fn", "output_fn", "transform_fn")

#: How long ``pip install -r code/requirements.txt`` may run before the load fails.
REQUIREMENTS_TIMEOUT_S = 900

_MODULE_IDS = itertools.count()
# Guards sys.modules / sys.path swaps of per-model helper modules (see the module docstring).
_IMPORT_LOCK = threading.RLock()


def _clean_message(exc: BaseException, limit: int = 600) -> str:
    """A one-line message for ``exc`` without traceback lines (some frameworks embed stack traces)."""
    text = str(exc) or type(exc).__name__
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("Traceback (most recent call last)", 'File "')):
            continue
        kept.append(stripped)
    message = re.sub(r"\s+", " ", " ".join(kept)).strip()
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_clean_message(exc)}"


def is_stream(value: Any) -> bool:
    """Whether a user function's or handler's result is a streamed answer: an iterator (a generator,
    typically). Lists, strings and arrays are iterable but not iterators, so they stay one answer."""
    return isinstance(value, Iterator)


def _close(stream: Iterator[Any]) -> None:
    """Close a stream that can be closed (a generator runs its ``finally`` blocks), logging a failure."""
    close = getattr(stream, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception as exc:
        logger.warning("closing a streamed answer failed: %s", _describe_exception(exc))


# ---------------------------------------------------------------------------------------------------
# Finding and importing the user script
# ---------------------------------------------------------------------------------------------------


def find_script(model_dir: str | Path, options: HandlerOptions) -> Path | None:
    """The user script's path, or None when the model has none.

    ``options.program`` (SAGEMAKER_PROGRAM, ".py" optional) in the code directory
    (``handlers.submit_directory``); unset, ``inference.py``. When either option is set the script
    must exist, and a ``code/`` directory with Python files but no script is refused too: serving the
    framework defaults instead of the code the user shipped would be a silent wrong answer.
    """
    code_dir = resolve_code_dir(Path(model_dir), options.submit_directory)
    configured = options.program is not None or bool(options.submit_directory)
    program = (options.program or "").strip() or DEFAULT_PROGRAM
    if not program.endswith(".py"):
        program += ".py"
    path = code_dir / program
    if path.is_file():
        return path
    present = sorted(p.name for p in code_dir.glob("*.py")) if code_dir.is_dir() else []
    if not configured and not present:
        return None
    where = f"{code_dir} (Python files there: {', '.join(present[:10]) or 'none'})"
    if options.program is not None:
        raise ModelLoadError(f"SAGEMAKER_PROGRAM={options.program}: no {program} in {where}")
    raise ModelLoadError(f"no user script {program} in {where}; name the entry script with SAGEMAKER_PROGRAM")


def install_requirements(code_dir: Path, timeout_s: float = REQUIREMENTS_TIMEOUT_S) -> bool:
    """``pip install -r <code_dir>/requirements.txt`` into this interpreter's environment.

    pip runs with ``code_dir`` as working directory (so ``./mylib`` lines mean ``code/mylib``). Worker
    processes loading the same artifact install it once: an exclusive file lock serializes pip runs
    (concurrent pips corrupt an environment) and a marker named by the file's content, its directory
    and the interpreter skips a repeat within the same container (markers live in the temp directory).

    Returns False when there is no requirements file. Raises ``ModelLoadError`` naming the file and
    quoting pip's last error lines when pip fails or runs longer than ``timeout_s``.
    """
    requirements = code_dir / "requirements.txt"
    if not requirements.is_file():
        return False
    digest = hashlib.sha256(
        b"\0".join([requirements.read_bytes(), str(code_dir.resolve()).encode(), sys.executable.encode()])
    ).hexdigest()[:32]
    state_dir = Path(tempfile.gettempdir()) / "servekit-requirements"
    state_dir.mkdir(parents=True, exist_ok=True)
    marker = state_dir / f"{digest}.done"
    with open(state_dir / "pip.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return True
        _run_pip(requirements, timeout_s)
        marker.touch()
    return True


def _run_pip(requirements: Path, timeout_s: float) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
        "-r", requirements.name,
    ]  # fmt: skip
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, cwd=requirements.parent, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelLoadError(
            f"pip install -r {requirements} did not finish in {timeout_s:.0f} s; pre-install these packages "
            "in the image instead (see docs/handlers.md)"
        ) from exc
    if result.returncode != 0:
        lines = [ln.strip() for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
        tail = " | ".join(lines[-5:]) or f"exit status {result.returncode}"
        raise ModelLoadError(
            f"pip install -r {requirements} failed: {tail}. Fix the file, or pre-install the packages "
            "in the image and remove it"
        )
    importlib.invalidate_caches()
    logger.info("installed %s in %.1f s", requirements, time.monotonic() - started)


def _top_level_names(code_dir: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(module names, package names) that ``import x`` could find in ``code_dir``."""
    modules: set[str] = set()
    packages: set[str] = set()
    if not code_dir.is_dir():
        return frozenset(), frozenset()
    for entry in code_dir.iterdir():
        if entry.is_file() and entry.suffix == ".py" and entry.stem.isidentifier():
            modules.add(entry.stem)
        elif entry.is_dir() and entry.name.isidentifier() and entry.name != "__pycache__":
            if (entry / "__init__.py").is_file() or any(entry.glob("*.py")):
                packages.add(entry.name)
    return frozenset(modules), frozenset(packages)


def _module_under(module: ModuleType | None, directory: Path) -> bool:
    """Whether ``module`` was loaded from a file or package inside ``directory``."""
    if module is None:
        return False
    locations = [getattr(module, "__file__", None), *list(getattr(module, "__path__", []) or [])]
    for location in locations:
        if location and Path(location).resolve().is_relative_to(directory):
            return True
    return False


class UserScript:
    """A user script imported for one model, with its helper modules kept apart from other models'."""

    def __init__(self, path: Path, model_name: str) -> None:
        self.path = path
        self.code_dir = path.parent.resolve()
        self.module_name = f"servekit_user_{re.sub(r'[^0-9A-Za-z_]', '_', model_name)}_{next(_MODULE_IDS)}"
        modules, packages = _top_level_names(self.code_dir)
        self._module_names = modules
        self._package_names = packages
        self._names = modules | packages
        # This model's helper modules while they are swapped out of sys.modules.
        self._helpers: dict[str, ModuleType] = {}
        self.module: ModuleType | None = None

    def import_module(self) -> None:
        """Execute the script under a unique module name (``ModelLoadError`` if it fails)."""
        spec = importlib.util.spec_from_file_location(self.module_name, self.path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"cannot import user script {self.path}: not a Python source file")
        module = importlib.util.module_from_spec(spec)
        # Registered so pickling, dataclasses and typing inside the script can find their module.
        sys.modules[self.module_name] = module
        try:
            with self.scope():
                spec.loader.exec_module(module)
        except HandlerError:
            sys.modules.pop(self.module_name, None)
            raise
        except BaseException as exc:
            sys.modules.pop(self.module_name, None)
            logger.exception("importing user script %s failed", self.path)
            raise ModelLoadError(f"importing user script {self.path} failed: {_describe_exception(exc)}") from exc
        self.module = module

    def function(self, name: str) -> Callable[..., Any] | None:
        """The script's ``name`` function, or None (``ModelLoadError`` if it is not callable)."""
        value = getattr(self.module, name, None)
        if value is None:
            return None
        if not callable(value):
            raise ModelLoadError(f"{name} in {self.path} is not a function")
        return value

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Make this model's helper modules importable by plain name while user code runs."""
        if not self._names:
            yield
            return
        with _IMPORT_LOCK:
            saved = {key: sys.modules.pop(key) for key in self._loaded_keys()}
            sys.modules.update(self._helpers)
            code_dir = str(self.code_dir)
            sys.path.insert(0, code_dir)
            try:
                yield
            finally:
                with contextlib.suppress(ValueError):
                    sys.path.remove(code_dir)
                for key in self._loaded_keys():
                    module = sys.modules.pop(key)
                    if _module_under(module, self.code_dir):
                        self._helpers[key] = module
                sys.modules.update(saved)

    def _loaded_keys(self) -> list[str]:
        keys = [name for name in self._module_names if name in sys.modules]
        if self._package_names:
            keys += [k for k in list(sys.modules) if k.partition(".")[0] in self._package_names]
        return keys

    def unload(self) -> None:
        """Forget the script module and its helpers."""
        sys.modules.pop(self.module_name, None)
        self._helpers.clear()
        self.module = None


def _takes_context(name: str, fn: Callable[..., Any], origin: Path) -> bool:
    """Whether ``fn`` takes the trailing ``context`` argument (the toolkit's arity rule).

    ``ModelLoadError`` when it takes neither the documented argument count nor one more.
    """
    expected = SCRIPT_FUNCTIONS[name]
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return True
    positional = [
        p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) == expected:
        return False
    if len(positional) == expected + 1:
        return True
    raise ModelLoadError(
        f"{name} in {origin} takes {len(positional)} arguments; it must take {expected} "
        f"(or {expected + 1} with a trailing context)"
    )


class _UserFunctions:
    """The script's functions, each bound with whether it receives ``context``."""

    def __init__(self, script: UserScript) -> None:
        self.fns: dict[str, tuple[Callable[..., Any], bool]] = {}
        for name in SCRIPT_FUNCTIONS:
            fn = script.function(name)
            if fn is not None:
                self.fns[name] = (fn, _takes_context(name, fn, script.path))
        if "transform_fn" in self.fns and {"input_fn", "predict_fn", "output_fn"} & self.fns.keys():
            raise ModelLoadError(
                f"{script.path} defines transform_fn together with input_fn/predict_fn/output_fn; "
                "define either transform_fn alone or the other three"
            )

    def has(self, name: str) -> bool:
        return name in self.fns

    def call(self, name: str, context: Context | None, *args: Any) -> Any:
        fn, takes_context = self.fns[name]
        return fn(*args, context) if takes_context else fn(*args)


def _script_invoker(handler: Handler, script: UserScript, functions: _UserFunctions) -> ScriptInvoker | None:
    """The handler's own script contract for ``script``, refusing a script that mixes it with
    sagemaker-inference's request functions (which of the two would serve is ambiguous)."""
    assert script.module is not None
    invoker = handler.script_invoker(script.module, script.path)
    mixed = [name for name in REQUEST_FUNCTIONS if functions.has(name)]
    if invoker is not None and mixed:
        raise ModelLoadError(
            f"{script.path} defines {', '.join(mixed)} together with the {handler.name} handler's own script "
            "functions; use one contract or the other"
        )
    return invoker


def check_media_defaults(handler: Handler, functions: _UserFunctions | None, invoker: ScriptInvoker | None) -> None:
    """No silent fallback: a default type the handler's codecs cannot answer (``default_accept`` or the
    user's SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT) or read (``default_content_type``) fails the load with
    one line, unless the user script answers (``output_fn`` / ``transform_fn``) or reads (``input_fn``
    / ``transform_fn``) requests itself, or the framework's own script contract serves them."""
    if invoker is not None:
        return
    user = set(functions.fns) if functions is not None else set()
    registry = handler.codec_registry()
    if not user & {"output_fn", "transform_fn"}:
        accept = handler.default_response_type
        codec = registry.get(codecs.parse_media_type(accept)[0])
        if codec is None or not codec.encodes:
            where = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT" if handler.options.default_accept else (
                f"{type(handler).__name__}.default_accept")
            raise ModelLoadError(
                f"{where}={accept}: the {handler.name} handler's codecs cannot answer it; use one of "
                f"{', '.join(registry.encodable_types())}, or answer it with an output_fn")
    content_type = handler.default_content_type
    if content_type is not None and not user & {"input_fn", "transform_fn"}:
        codec = registry.get(codecs.parse_media_type(content_type)[0])
        if codec is None or not codec.decodes:
            raise ModelLoadError(
                f"{type(handler).__name__}.default_content_type={content_type}: the {handler.name} handler's "
                f"codecs cannot read it; use one of {', '.join(registry.decodable_types())}")


# ---------------------------------------------------------------------------------------------------
# The served model
# ---------------------------------------------------------------------------------------------------


class ServedModel:
    """A loaded model ready for ``invoke``; build it with ``ServedModel.load``."""

    def __init__(
        self,
        handler: Handler,
        model: Any,
        model_dir: str,
        model_name: str,
        script: UserScript | None = None,
        functions: _UserFunctions | None = None,
        invoker: ScriptInvoker | None = None,
    ) -> None:
        self.handler = handler
        self.model = model
        self.model_dir = model_dir
        self.model_name = model_name
        self.script = script
        self._fns = functions
        self._invoker = invoker
        self._loaded = True
        self._unsplit_logged = False  # the WARNING that a batch's answer could not be cut, once per model

    # ---- load / unload -----------------------------------------------------------------------------
    @classmethod
    def load(cls, handler: Handler, model_dir: str, model_name: str = "model") -> ServedModel:
        """Load the artifact at ``model_dir`` with ``handler`` and the artifact's user script, if any.

        Raises ``ModelLoadError`` (500) naming what is missing or what failed, or a ``HandlerError``
        with status 507 when loading ran out of memory.
        """
        path = Path(model_dir)
        if not path.is_dir():
            raise ModelLoadError(f"model directory {model_dir} does not exist or is not a directory")
        options = handler.options
        script: UserScript | None = None
        functions: _UserFunctions | None = None
        invoker: ScriptInvoker | None = None
        script_path = find_script(path, options)
        if script_path is not None:
            if options.install_requirements:
                install_requirements(script_path.parent)
            script = UserScript(script_path, model_name)
            script.import_module()
            functions = _UserFunctions(script)
            invoker = _script_invoker(handler, script, functions)
        check_media_defaults(handler, functions, invoker)
        context = Context(model_name, model_dir, gpu_id=getattr(handler, "gpu_id", None))
        scope = script.scope() if script is not None else contextlib.nullcontext()
        step = "loading the model"
        try:
            with scope:
                if functions is not None and functions.has("pre_model_fn"):
                    step = "pre_model_fn"
                    functions.call("pre_model_fn", context, model_dir)
                if functions is not None and functions.has("model_fn"):
                    step = "model_fn"
                    model = functions.call("model_fn", context, model_dir)
                    step = f"{handler.name} handler prepare"
                    model = handler.prepare(model)
                else:
                    step = f"{handler.name} handler load"
                    model = handler.load(model_dir)
                if functions is not None and functions.has("model_warmup_fn"):
                    step = "model_warmup_fn"
                    functions.call("model_warmup_fn", context, model_dir, model)
        except HandlerError:
            if script is not None:
                script.unload()
            raise
        except MemoryError as exc:
            if script is not None:
                script.unload()
            raise HandlerError(f"model {model_name!r}: out of memory during {step}", status=507) from exc
        except Exception as exc:
            if script is not None:
                script.unload()
            where = f" in {script.path}" if script is not None and step.endswith("_fn") else ""
            logger.exception("model %s: %s failed", model_name, step)
            raise ModelLoadError(
                f"model {model_name!r}: {step}{where} failed: {_describe_exception(exc)}"
            ) from exc
        logger.info(
            "model %s loaded from %s (%s handler%s)",
            model_name,
            model_dir,
            handler.name,
            f", user script {script.path}" if script is not None else "",
        )
        return cls(handler, model, model_dir, model_name, script, functions, invoker)

    def unload(self) -> None:
        """Release the model (the handler frees framework resources) and forget the user script."""
        if not self._loaded:
            return
        self._loaded = False
        model, self.model = self.model, None
        try:
            self.handler.unload(model)
        finally:
            if self.script is not None:
                self.script.unload()
            self._fns = None
            del model

    # ---- invoke ------------------------------------------------------------------------------------
    def invoke(self, request: Request) -> Response:
        """Decode -> predict -> encode one request (user functions first, handler defaults otherwise)."""
        if not self._loaded:
            raise HandlerError(f"model {self.model_name!r} is unloaded", status=404)
        request = self._with_content_type(request)
        if self._invoker is not None:
            return self._invoke_script_contract(self._invoker, request)
        fns = self._fns
        context = self._request_context(request) if fns is not None else None
        scope = self.script.scope() if self.script is not None else contextlib.nullcontext()
        step = "decode"
        try:
            with scope:
                if fns is not None and fns.has("transform_fn"):
                    step = "transform_fn"
                    result = fns.call(
                        "transform_fn",
                        context,
                        self.model,
                        self._user_body(request),
                        request.content_type,
                        self._user_accept(request),
                    )
                    response = self._user_response(result, request, context, step)
                else:
                    if fns is not None and fns.has("input_fn"):
                        step = "input_fn"
                        data = fns.call("input_fn", context, self._user_body(request), request.content_type)
                    else:
                        data = self.handler.decode(request.body, request.content_type)
                    if fns is not None and fns.has("predict_fn"):
                        step = "predict_fn"
                        prediction = fns.call("predict_fn", context, data, self.model)
                    else:
                        step = "predict"
                        prediction = self.handler.predict_request(self.model, data, request)
                    if fns is not None and fns.has("output_fn"):
                        step = "output_fn"
                        result = fns.call("output_fn", context, prediction, self._user_accept(request))
                        response = self._user_response(result, request, context, step)
                    elif is_stream(prediction):  # streamed as it is (docs/handlers.md, "Streaming")
                        response = self._user_response(prediction, request, context, step)
                    else:
                        step = "encode"
                        body, content_type = self.handler.encode(prediction, request.accept)
                        response = Response(body=body, content_type=content_type)
        except HandlerError:
            raise
        except Exception as exc:
            raise self._wrap(exc, step) from exc
        if context is not None:
            self._apply_context(context, response)
        return response

    # ---- batches (docs/handlers.md, "Batching") ----------------------------------------------------
    def invoke_batch(self, requests: list[Request]) -> list[Response | Exception]:
        """Answer several requests, in order, each answer a ``Response`` or the exception that request
        alone raised. On the default pipeline (no ``predict_fn`` / ``transform_fn`` / framework script
        contract) each request is decoded (``input_fn``), the rows of those that fit together are joined
        and predicted in one call, and each gets its own rows through ``output_fn``; otherwise, as AWS's
        toolkit does inside a TorchServe batch (docs/sagemaker-contract.md §12.2), each runs alone."""
        fns = self._fns
        if not self._loaded or self._invoker is not None or (
                fns is not None and (fns.has("transform_fn") or fns.has("predict_fn"))):
            return [self._alone(request) for request in requests]
        requests = [self._with_content_type(request) for request in requests]
        contexts = [self._request_context(r) if fns is not None else None for r in requests]
        answers: dict[int, Response | Exception] = {}
        decoded: dict[int, Any] = {}
        scope = self.script.scope() if self.script is not None else contextlib.nullcontext()
        with scope:
            for i, request in enumerate(requests):
                self._attempt(answers, i, functools.partial(self._decoded, request, contexts[i]), decoded)
            predictions: dict[int, Any] = {}
            for group in self._groups(decoded, requests):
                self._predict_group(group, decoded, requests, predictions, answers)
            for i, prediction in predictions.items():
                self._attempt(answers, i, functools.partial(self._answer, prediction, requests[i], contexts[i]))
        return [answers[i] for i in range(len(requests))]

    def _alone(self, request: Request) -> Response | Exception:
        try:
            return self.invoke(request)
        except Exception as exc:
            return exc

    def _attempt(self, answers: dict[int, Response | Exception], i: int, step: Callable[[], Any],
                 results: dict[int, Any] | None = None) -> None:
        """Run one request's ``step``: its result into ``results`` (else its answer), or its failure
        into ``answers``; a failure is that request's alone."""
        try:
            result = step()
        except Exception as exc:
            answers[i] = exc
            return
        if results is None:
            answers[i] = result
        else:
            results[i] = result

    def _decoded(self, request: Request, context: Context | None) -> Any:
        if self._fns is not None and self._fns.has("input_fn"):
            return self._step("input_fn", self._fns.call, "input_fn", context, self._user_body(request),
                              request.content_type)
        return self._step("decode", self.handler.decode, request.body, request.content_type)

    def _answer(self, prediction: Any, request: Request, context: Context | None) -> Response:
        if self._fns is not None and self._fns.has("output_fn"):
            result = self._step("output_fn", self._fns.call, "output_fn", context, prediction,
                                self._user_accept(request))
            response = self._user_response(result, request, context, "output_fn")
        elif is_stream(prediction):
            response = self._user_response(prediction, request, context, "predict")
        else:
            body, content_type = self._step("encode", self.handler.encode, prediction, request.accept)
            response = Response(body=body, content_type=content_type)
        if context is not None:
            self._apply_context(context, response)
        return response

    def _step(self, step: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, its failure made a ``HandlerError`` as ``invoke`` makes it for ``step``."""
        try:
            return fn(*args)
        except HandlerError:
            raise
        except Exception as exc:
            raise self._wrap(exc, step) from exc

    def _groups(self, decoded: dict[int, Any], requests: list[Request]) -> list[list[tuple[int, Any]]]:
        """The decoded requests as groups whose rows join (same handler key and Custom-Attributes, which
        a handler may predict by), in order of arrival; a request that joins nothing is a group alone."""
        groups: dict[Any, list[tuple[int, Any]]] = {}
        for i, data in decoded.items():
            try:
                part = self.handler.batch_part(data)
            except Exception:  # not joinable: the request is predicted alone, where errors surface
                part = None
            key = (part[0], requests[i].custom_attributes) if part is not None else ("alone", i)
            groups.setdefault(key, []).append((i, part[1] if part is not None else data))
        return list(groups.values())

    def _predict_group(self, group: list[tuple[int, Any]], decoded: dict[int, Any], requests: list[Request],
                       predictions: dict[int, Any], answers: dict[int, Response | Exception]) -> None:
        """One predict call for the group's joined rows, cut back per request; a group of one, or one
        whose joined call fails or whose answer has not one row per input row, is predicted per request
        (so a failure is the failing request's alone)."""
        if len(group) > 1:
            pieces = self._joined_prediction(group, requests[group[0][0]])
            if pieces is not None:
                predictions.update(zip((i for i, _ in group), pieces, strict=True))
                return
        for i, _ in group:
            self._attempt(answers, i, functools.partial(
                self._step, "predict", self.handler.predict_request, self.model, decoded[i], requests[i]), predictions)

    def _joined_prediction(self, group: list[tuple[int, Any]], first: Request) -> list[Any] | None:
        parts = [part for _, part in group]
        rows = [len(part) for part in parts]
        try:
            pieces = self.handler.split(self.handler.predict_request(self.model, self.handler.join(parts), first),
                                        rows)
        except Exception as exc:  # retried per request, where the failing one answers with its error
            logger.debug("model %s: a batch of %d requests failed as one (%s); predicting each alone",
                         self.model_name, len(group), _describe_exception(exc))
            return None
        if pieces is None:
            if not self._unsplit_logged:
                self._unsplit_logged = True
                logger.warning("model %s: the answer to a batch of %d rows does not have one row per input row; "
                               "its requests are predicted alone (logged once)", self.model_name, sum(rows))
            return None
        logger.debug("model %s: %d requests predicted as one batch of %d rows", self.model_name, len(group),
                     sum(rows))
        return pieces

    def _invoke_script_contract(self, invoker: ScriptInvoker, request: Request) -> Response:
        """Serve ``request`` through the framework's own script contract (see ``Handler.script_invoker``)."""
        assert self.script is not None  # an invoker exists only for a loaded script
        try:
            with self.script.scope():
                return invoker(self.model, request)
        except HandlerError:
            raise
        except Exception as exc:
            raise self._wrap(exc, f"{self.script.path.name} handler") from exc

    # ---- helpers -----------------------------------------------------------------------------------
    def _with_content_type(self, request: Request) -> Request:
        """``request`` with the handler's ``default_content_type`` in place of a missing Content-Type,
        so the handler's ``decode``, the user's ``input_fn`` and ``context`` all see the same type."""
        default = self.handler.default_content_type
        if default is None or (request.content_type or "").strip():
            return request
        return dataclasses.replace(request, content_type=default)

    def _request_context(self, request: Request) -> Context:
        headers: dict[str, str] = {}
        if request.content_type is not None:
            headers["Content-Type"] = request.content_type
        if request.accept is not None:
            headers["Accept"] = request.accept
        if request.custom_attributes is not None:
            headers[CUSTOM_ATTRIBUTES_HEADER] = request.custom_attributes
        if request.target_model is not None:
            headers[TARGET_MODEL_HEADER] = request.target_model
        return Context(
            request.model_name or self.model_name,
            self.model_dir,
            gpu_id=getattr(self.handler, "gpu_id", None),
            request_headers=headers,
        )

    def _user_body(self, request: Request) -> bytes | str:
        """The body as the toolkit hands it to user code: ``str`` for JSON and CSV, else ``bytes``."""
        media_type, params = codecs.parse_media_type(request.content_type)
        if media_type in codecs.UTF8_TYPES:
            return codecs.decode_text(request.body, params, media_type)
        return request.body

    def _user_accept(self, request: Request) -> str:
        """The Accept handed to user code: the header verbatim, or the default for missing / ``*/*``."""
        accept = (request.accept or "").strip()
        if not accept or accept == codecs.ANY:
            return self.handler.default_response_type
        return accept

    def _user_response(self, result: Any, request: Request, context: Context | None, step: str) -> Response:
        """Turn what output_fn/transform_fn returned into a Response (toolkit rules, plus str/JSON); an
        iterator is a streamed answer whose first chunk is pulled now (docs/handlers.md, "Streaming")."""
        content_type: str | None = None
        body: Any = result
        if isinstance(result, tuple) and len(result) == 2:
            body, content_type = result
        chunks = None
        if is_stream(body):
            data, chunks = self._first_chunk(body, step)
        else:
            data = self._body_bytes(body)
        if not content_type and context is not None:
            content_type = context.get_response_content_type(0)
        if not content_type:
            ranges = [mt for mt in codecs.parse_accept(self._user_accept(request)) if "*" not in mt]
            content_type = ranges[0] if ranges else self.handler.default_response_type
        return Response(body=data, content_type=str(content_type), chunks=chunks)

    def _body_bytes(self, body: Any) -> bytes:
        """A user function's answer as bytes: bytes as is, str as UTF-8, anything else as JSON."""
        if isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            # Like multi-model-server, which JSON-encodes any other return value.
            try:
                data = json.dumps(body, default=codecs.to_builtin).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise PredictionError(
                    f"model {self.model_name!r}: the user script returned {type(body).__name__}, which is "
                    "neither bytes, str, (bytes, content_type) nor JSON-serializable"
                ) from exc
        return data

    def _first_chunk(self, stream: Iterator[Any], step: str) -> tuple[bytes, ChunkStream]:
        """The stream's first non-empty chunk, pulled now so that a failure before it is an ordinary
        error answer, and the chunks after it (b"" for a stream with none)."""
        pulled = 0
        try:
            for item in stream:
                pulled += 1
                chunk = self.chunk_bytes(item, pulled, PredictionError)
                if chunk:
                    return chunk, _RestOfStream(self, stream, step, pulled)
        except BaseException:
            _close(stream)
            raise
        return b"", _RestOfStream(self, stream, step, pulled)

    def chunk_bytes(self, item: Any, index: int, error: type[HandlerError]) -> bytes:
        """Chunk ``index`` (from 1) of a stream as bytes: bytes as they are, str as UTF-8, else ``error``."""
        if isinstance(item, (bytes, bytearray, memoryview)):
            return bytes(item)
        if isinstance(item, str):
            return item.encode("utf-8")
        raise error(f"model {self.model_name!r}: chunk {index} of the streamed answer is {type(item).__name__}; "
                    "a stream yields bytes or str (docs/handlers.md, \"Streaming\")")

    def _apply_context(self, context: Context, response: Response) -> None:
        """Carry what user code set on ``context`` (status, custom attributes, headers) to the response."""
        status, phrase = context.get_response_status(0)
        if status >= 400:
            if response.chunks is not None:
                response.chunks.close()
            detail = phrase or response.body.decode("utf-8", errors="replace")[:600]
            raise HandlerError(f"model {self.model_name!r}: {detail}", status=status)
        for key, value in context.get_response_headers(0).items():
            lowered = key.lower()
            if lowered == CUSTOM_ATTRIBUTES_HEADER.lower():
                response.custom_attributes = value
            elif lowered != "content-type":
                response.headers[key] = value

    def _wrap(self, exc: Exception, step: str) -> HandlerError:
        """Any non-HandlerError from user or framework code -> a HandlerError with a fitting status."""
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and 400 <= status <= 599:
            message = getattr(exc, "message", None) or _clean_message(exc)
            return HandlerError(f"model {self.model_name!r}: {_clean_message(Exception(message))}", status=status)
        if isinstance(exc, MemoryError):
            return HandlerError(f"model {self.model_name!r}: out of memory in {step}", status=507)
        # RecursionError: user code parsing deeply nested input (e.g. json.loads in input_fn).
        input_fault = step in ("decode", "input_fn") and isinstance(
            exc, (ValueError, TypeError, KeyError, IndexError, UnicodeError, RecursionError)
        )
        input_fault = input_fault or (
            step in ("predict", "predict_fn", "transform_fn") and isinstance(exc, ValueError)
        )
        if input_fault:
            # Not logged here: the server logs every 4xx once, with the model and this message.
            return BadRequestError(f"model {self.model_name!r}: {step} rejected the input: {_describe_exception(exc)}")
        logger.error("model %s: %s failed", self.model_name, step, exc_info=exc)
        return PredictionError(f"model {self.model_name!r}: {step} failed: {_describe_exception(exc)}")


class _RestOfStream:
    """The chunks of a user's stream after its first (``handlers.base.ChunkStream``), each produced in
    the script's scope when pulled; a failure ends it with ``StreamError`` naming the cause. Closing
    it closes the user's stream, whether or not it was pulled from."""

    def __init__(self, served: ServedModel, stream: Iterator[Any], step: str, pulled: int) -> None:
        self.served = served
        self.stream = stream
        self.step = step
        self.pulled = pulled
        self.closed = False

    def _scope(self) -> contextlib.AbstractContextManager[Any]:
        script = self.served.script
        return script.scope() if script is not None else contextlib.nullcontext()

    def __iter__(self) -> _RestOfStream:
        return self

    def __next__(self) -> bytes:
        while not self.closed:
            with self._scope():
                item = self._pull()
            self.pulled += 1
            chunk = self.served.chunk_bytes(item, self.pulled, StreamError)
            if chunk:
                return chunk
        raise StopIteration

    def _pull(self) -> Any:
        try:
            return next(self.stream)
        except StopIteration:
            self.closed = True
            raise
        except Exception as exc:
            self.closed = True
            name = self.served.model_name
            logger.debug("model %s: %s failed mid-stream", name, self.step, exc_info=exc)
            raise StreamError(f"model {name!r}: {self.step} failed after yielding {self.pulled} item(s) of a streamed "
                              f"answer: {_describe_exception(exc)}") from exc

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with self._scope():
                _close(self.stream)
