"""Shared helpers for handler tests: artifact directories, user scripts, a tiny framework-free handler."""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from handlers.base import Handler, HandlerOptions, Request
from handlers.errors import ModelLoadError


class ScaleHandler(Handler):
    """A framework-free handler: ``scale.json`` holds a factor; predict multiplies the input by it."""

    name = "scale"

    def load(self, model_dir: str) -> Any:
        path = Path(model_dir) / "scale.json"
        if not path.is_file():
            raise ModelLoadError(f"{path} not found")
        return json.loads(path.read_text())["factor"]

    def predict(self, model: Any, data: Any) -> Any:
        return np.asarray(data, dtype=float) * model


class SpawnOnlyScaleHandler(ScaleHandler):
    """ScaleHandler declaring that forking after its import is unsafe: the server must spawn workers."""

    fork_safe = False


class ForkHazardScaleHandler(ScaleHandler):
    """ScaleHandler that finds every forked worker unsafe at run time (as a CUDA context in the fork
    parent would make it): the server must switch to spawning workers."""

    @classmethod
    def fork_hazard(cls) -> str | None:
        return "the test's hazard"


class CSVScaleHandler(ScaleHandler):
    """ScaleHandler declaring the defaults of AWS's first-party algorithm containers: CSV answers a
    missing or ``*/*`` Accept, and a request without Content-Type is read as CSV."""

    default_accept = "text/csv"
    default_content_type = "text/csv"


class PngAnswering(ScaleHandler):
    """Declares a default Accept none of its codecs can answer: refused at load."""

    default_accept = "image/png"


class PngReading(ScaleHandler):
    """Declares a default Content-Type none of its codecs can read: refused at load."""

    default_content_type = "image/png"


def write(path: Path, text: str) -> Path:
    """Write dedented ``text`` to ``path`` (creating parents)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def scale_dir(tmp_path: Path) -> Path:
    """An artifact for ScaleHandler with factor 2 and no user code."""
    model_dir = tmp_path / "model"
    write(model_dir / "scale.json", '{"factor": 2}')
    return model_dir


def make_handler(**options: Any) -> ScaleHandler:
    return ScaleHandler(HandlerOptions(**options))


def req(
    body: bytes | str, content_type: str | None = "application/json", accept: str | None = None, **kw: Any
) -> Request:
    """A Request with str bodies encoded as UTF-8."""
    data = body.encode() if isinstance(body, str) else body
    return Request(body=data, content_type=content_type, accept=accept, **kw)


def assert_clean(message: str) -> None:
    """A user-facing message: one line, no traceback."""
    assert "Traceback" not in message
    assert 'File "' not in message
    assert "\n" not in message


# ---- payloads in every codec, and decoding a response back to an array -------------------------------


def npy(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    out = io.BytesIO()
    np.save(out, arr, allow_pickle=allow_pickle)
    return out.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return out.getvalue()


def csv_rows(arr: np.ndarray) -> str:
    """Rows as CSV with every float written exactly (repr)."""
    return "\n".join(",".join(repr(float(v)) for v in row) for row in arr) + "\n"


#: The same rows in each request format a handler must take (Content-Type -> body builder).
INPUTS: dict[str, Callable[[np.ndarray], bytes]] = {
    "application/json": lambda a: json.dumps(a.tolist()).encode(),
    "application/json (instances)": lambda a: json.dumps({"instances": a.tolist()}).encode(),
    "text/csv; charset=utf-8": lambda a: csv_rows(a).encode(),
    "application/x-npy": npy,
    "application/x-npz": lambda a: npz(x=a),
    "application/jsonlines": lambda a: "".join(json.dumps(r) + "\n" for r in a.tolist()).encode(),
}
#: Every response format.
ACCEPTS = ["application/json", "text/csv", "application/x-npy", "application/x-npz", "application/jsonlines"]


def decode_output(body: bytes, content_type: str) -> np.ndarray:
    """A response body back to an array (JSON: a bare array or TF Serving's {"predictions": ...})."""
    if content_type == "application/json":
        payload = json.loads(body)
        return np.asarray(payload["predictions"] if isinstance(payload, dict) else payload)
    if content_type == "text/csv":
        return np.loadtxt(io.StringIO(body.decode()), delimiter=",", ndmin=2)
    if content_type == "application/x-npy":
        return np.load(io.BytesIO(body))
    if content_type == "application/x-npz":
        with np.load(io.BytesIO(body)) as archive:
            return archive[archive.files[0]]
    if content_type == "application/jsonlines":
        return np.asarray([json.loads(line) for line in body.decode().splitlines()])
    raise AssertionError(content_type)
