"""PyTorch: TorchScript (``torch.jit``) and ``torch.export`` programs; state dicts through ``model_fn``.

Artifact layout (first match wins):

* ``model.pt`` or ``model.pth`` -- TorchScript, loaded with ``torch.jit.load``;
* the only ``*.pt2`` -- a ``torch.export`` program, loaded with ``torch.export.load(...).module()``;
* the only ``*.pt`` / ``*.pth`` -- TorchScript.

A ``torch.save`` checkpoint (a state dict or a pickled ``nn.Module``) is not loaded by default: it
needs the module's Python class, so the user script builds it::

    # code/inference.py
    import torch
    from net import Net            # code/net.py, shipped next to inference.py

    def model_fn(model_dir):
        model = Net()
        model.load_state_dict(torch.load(f"{model_dir}/model.pth", map_location="cpu", weights_only=True))
        return model                # the handler moves it to the device and calls eval()

Device: CUDA (``cuda:0``) when ``torch.cuda.is_available()``, else CPU. Inference runs under
``torch.inference_mode()``. Input: JSON / CSV / JSON Lines become ``float32`` tensors (the AWS PyTorch
toolkit's rule); NPY / NPZ keep their dtype (send integer token ids as NPY). Floating inputs are cast
to the model's floating dtype. A mapping of arrays (NPZ with several arrays, JSON ``{"inputs": {...}}``)
is passed as keyword arguments. Output tensors become NumPy arrays for the codecs.
"""

from __future__ import annotations

import gc
import logging
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from handlers import codecs
from handlers.artifacts import only_file
from handlers.base import Handler, HandlerOptions
from handlers.errors import BadRequestError, ModelLoadError, PredictionError

logger = logging.getLogger("servekit.handlers.pytorch")

#: TorchScript files tried first, in order.
TORCHSCRIPT_NAMES = ("model.pt", "model.pth")

#: Substrings of torch error messages that mean the input's shape or type is wrong (-> 400).
_INPUT_FAULT_MARKERS = (
    "shape",
    "size mismatch",
    "must match the size",
    "dimension",
    "Guard failed",
    "expected scalar type",
    "Expected all tensors",
    "expected input",
    "Expected input",
    "dtype",
    "mat1 and mat2",
)


def _last_line(exc: BaseException) -> str:
    """The useful line of a torch error (TorchScript prepends its own interpreter traceback)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _is_torch_save_checkpoint(path: Path) -> bool:
    """A zip written by ``torch.save`` has ``data.pkl`` but, unlike TorchScript, no ``constants.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        # Legacy (pre-1.6) torch.save files are plain pickles, not zips.
        return path.stat().st_size > 0 and path.read_bytes()[:2] == b"\x80\x02"
    return any(n.endswith("/data.pkl") for n in names) and not any(n.endswith("/constants.pkl") for n in names)


def find_artifact(model_dir: str | Path) -> tuple[Path, str]:
    """(file, kind) to load, kind ``"torchscript"`` or ``"export"``; ``ModelLoadError`` otherwise."""
    root = Path(model_dir)
    for name in TORCHSCRIPT_NAMES:
        if (root / name).is_file():
            return root / name, "torchscript"
    program = only_file(root, ("*.pt2",), "keep one, or load the one you want in a model_fn in code/inference.py")
    if program is not None:
        return program, "export"
    script = only_file(root, ("*.pt", "*.pth"), "name the TorchScript file model.pt, or load the model in a "
                                                "model_fn in code/inference.py")
    if script is not None:
        return script, "torchscript"
    raise ModelLoadError(
        f"model artifact {root} has no model.pt (TorchScript), *.pt2 (torch.export) or other *.pt / *.pth "
        "file; save with torch.jit.save(torch.jit.script(model), 'model.pt'), or define model_fn in "
        "code/inference.py to build the module from a state dict"
    )


class PyTorchHandler(Handler):
    """PyTorch handler (``SERVE_FRAMEWORK=pytorch``)."""

    name: ClassVar[str] = "pytorch"
    preload_modules: ClassVar[tuple[str, ...]] = ("numpy", "torch")
    # Importing torch starts no threads and does not initialize CUDA (that happens in the worker, on
    # first use), so forking from a parent that imported it is safe.
    fork_safe: ClassVar[bool] = True
    # torch's intra-op thread pool already uses every core; more processes would oversubscribe them.
    default_workers: ClassVar[int] = 1

    def __init__(self, options: HandlerOptions | None = None) -> None:
        super().__init__(options)
        self._device: Any = None

    @property
    def device(self) -> Any:
        """``torch.device('cuda:0')`` when CUDA is available, else CPU (decided on first use)."""
        if self._device is None:
            import torch

            self._device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        return self._device

    @property
    def gpu_id(self) -> int | None:
        """The GPU index user scripts see as ``context.system_properties["gpu_id"]`` (None on CPU)."""
        return 0 if self.device.type == "cuda" else None

    def load(self, model_dir: str) -> Any:
        """Load TorchScript or a ``torch.export`` program onto ``self.device`` in eval mode."""
        import torch

        path, kind = find_artifact(model_dir)
        try:
            if kind == "export":
                model = torch.export.load(str(path)).module()
                if self.device.type != "cpu":
                    model = model.to(self.device)
            else:
                model = torch.jit.load(str(path), map_location=self.device)
        except Exception as exc:
            if kind == "torchscript" and _is_torch_save_checkpoint(path):
                raise ModelLoadError(
                    f"{path} is a torch.save checkpoint (a state dict or pickled module), not TorchScript. "
                    "Define model_fn in code/inference.py that builds the module and loads the weights, or "
                    "save the model with torch.jit.save(torch.jit.script(model), 'model.pt')"
                ) from exc
            raise ModelLoadError(f"cannot load {path} ({kind}): {type(exc).__name__}: {_last_line(exc)}") from exc
        return self.prepare(model)

    def prepare(self, model: Any) -> Any:
        """Move a module to the device and switch it to eval mode (also applied to ``model_fn`` results)."""
        import torch

        if isinstance(model, torch.nn.Module):
            model = model.to(self.device)
            try:
                model.eval()
            except NotImplementedError:
                # Exported programs' modules refuse train/eval switching; they are inference graphs.
                pass
        return model

    # ---- codecs ------------------------------------------------------------------------------------
    def decode(self, body: bytes, content_type: str | None) -> Any:
        """Codec output -> tensor(s) on the device (JSON/CSV/JSON Lines as float32, NPY/NPZ keep dtype)."""
        data = super().decode(body, content_type)
        media_type, _ = codecs.parse_media_type(content_type)
        as_float = media_type in (codecs.JSON, codecs.CSV, codecs.JSONLINES)
        return self.to_tensors(data, as_float)

    def to_tensors(self, data: Any, as_float: bool = False) -> Any:
        """Arrays, lists and mappings of them -> tensors on the device (``BadRequestError`` if impossible)."""
        import torch

        if isinstance(data, torch.Tensor):
            return data.to(self.device)
        if isinstance(data, Mapping):
            for key in ("instances", "inputs"):
                if key in data and len(data) == 1:
                    return self.to_tensors(data[key], as_float)
            return {str(k): self.to_tensors(v, as_float) for k, v in data.items()}
        try:
            arr = codecs.as_array(data, self.options.decode_limits())
        except (TypeError, ValueError) as exc:
            raise BadRequestError(f"the input cannot be made into a tensor: {exc}") from exc
        if arr.dtype == object or arr.dtype.kind in "US":
            raise BadRequestError(
                "the input holds strings or ragged rows; a PyTorch model takes numeric arrays of one shape"
            )
        if as_float or arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)

    def encode(self, prediction: Any, accept: str | None) -> tuple[bytes, str]:
        """Tensors -> NumPy, then the codec registry."""
        return super().encode(to_numpy(prediction), accept)

    # ---- batching (docs/handlers.md, "Batching") ------------------------------------------------------
    def batch_part(self, data: Any) -> tuple[Any, Any] | None:
        """A decoded tensor joins others of its trailing shape, dtype and device; arrays as the base's."""
        import torch

        if isinstance(data, torch.Tensor):
            if data.ndim >= 1 and not data.is_complex():
                return ("tensor", tuple(data.shape[1:]), str(data.dtype), str(data.device)), data
            return None
        return super().batch_part(data)

    def join(self, parts: list[Any]) -> Any:
        import torch

        return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else super().join(parts)

    def split(self, prediction: Any, rows: list[int]) -> list[Any] | None:
        """A tensor answer is cut along its first dimension; anything else goes through NumPy."""
        import torch

        if isinstance(prediction, torch.Tensor):
            if prediction.ndim >= 1 and len(prediction) == sum(rows):
                return list(torch.split(prediction, rows))
            return None
        return super().split(to_numpy(prediction), rows)

    # ---- predict / unload --------------------------------------------------------------------------
    def predict(self, model: Any, data: Any) -> Any:
        """Run ``model`` on ``data`` under ``torch.inference_mode()``; shape/dtype errors -> 400."""
        import torch

        inputs = self.to_tensors(data)
        inputs = _match_dtype(inputs, _float_dtype(model))
        try:
            with torch.inference_mode():
                if isinstance(inputs, dict):
                    return model(**inputs)
                return model(inputs)
        except (RuntimeError, AssertionError, ValueError, TypeError) as exc:
            line = _last_line(exc)
            if any(marker in str(exc) for marker in _INPUT_FAULT_MARKERS):
                raise BadRequestError(f"the model rejected the input: {line}") from exc
            raise PredictionError(f"the model failed: {type(exc).__name__}: {line}") from exc

    def unload(self, model: Any) -> None:
        """Drop the model and return cached CUDA memory to the device."""
        del model
        gc.collect()
        import torch

        if self._device is not None and self._device.type == "cuda":
            torch.cuda.empty_cache()


def _float_dtype(model: Any) -> Any:
    """The first floating parameter/buffer dtype of ``model``, or None."""
    for getter in ("parameters", "buffers"):
        fn = getattr(model, getter, None)
        if not callable(fn):
            continue
        try:
            for tensor in fn():
                if tensor.is_floating_point():
                    return tensor.dtype
        except Exception:  # noqa: BLE001 - some scripted/exported modules do not expose them
            return None
    return None


def _match_dtype(inputs: Any, dtype: Any) -> Any:
    if dtype is None:
        return inputs
    if isinstance(inputs, dict):
        return {k: _match_dtype(v, dtype) for k, v in inputs.items()}
    if inputs.is_floating_point() and inputs.dtype != dtype:
        return inputs.to(dtype)
    return inputs


def to_numpy(value: Any) -> Any:
    """Tensors (also inside tuples, lists and dicts) -> NumPy arrays; other values unchanged."""
    try:
        import torch
    except ImportError:  # pragma: no cover - the handler is only used with torch installed
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, Mapping):
        return {k: to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_numpy(v) for v in value]
    return value
