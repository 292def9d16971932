"""AWS's serving stack as it ships: multi-model-server 1.1.11 + sagemaker-inference 1.10.1, in its own venv.

Wiring, learnt from aws/sagemaker-scikit-learn-container (nothing of theirs is copied here):

* The launcher is sagemaker-inference's own ``model_server.start_model_server(handler_service=...)``:
  it writes MMS's config, runs ``multi-model-server --start`` (which detaches Java), finds Java by
  scanning the process table, forwards SIGTERM to it and waits. Two things a container gives it are
  given here instead, in the launcher's first lines: the config file goes into this run's work
  directory instead of ``/etc/sagemaker-mms.properties``, and the process-table scan sees only the
  launcher's own session (in a container it sees only the container's processes; on a shared machine
  another MMS would make it fail with "multiple mms model servers are not supported"). Everything
  else is stock. MMS binds 127.0.0.1 through its own ``MMS_*`` environment override
  (``enable_envvars_config=true`` in sagemaker-inference's MMS config).
* The handler service: AWS's scikit-learn container does not use sagemaker-inference's
  ``default_handler_service`` as is; it ships its own module, a ``DefaultHandlerService`` whose
  ``Transformer`` gets a scikit-learn default inference handler (decode with sagemaker-inference's
  decoder, reshape one row to 2-D, float32 for text types, ``model.predict``, sagemaker-inference's
  encoder; no default ``model_fn``, so the user's ``inference.py`` must load the model). The suite
  writes an equivalent module into its work directory at run time, and the two-line ``model_fn``
  script a user of that container must supply. For PyTorch the module follows the MMS-era
  sagemaker-pytorch-inference-toolkit handler (TorchScript ``model.pt`` loaded by default); for
  TensorFlow, which AWS serves with TensorFlow Serving rather than MMS, it is the generic
  bring-your-own-framework path sagemaker-inference documents: the same stack with a handler that
  calls the SavedModel's ``serving_default`` in-process, as servekit's TensorFlow handler does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

AWS_PINS = ("multi-model-server==1.1.11", "sagemaker-inference==1.10.1", "setuptools<82")
HANDLER_MODULE = "bench_handler_service"
INSTALL_TIMEOUT_S = 1800


def cache_dir() -> Path:
    return Path(os.environ.get("SERVEKIT_BENCH_CACHE", Path.home() / ".cache" / "servekit-bench"))


def requirements(frameworks: tuple[str, ...]) -> list[str]:
    """AWS's pins plus the very framework versions servekit's venv runs, so only the stack differs."""
    pins = [*AWS_PINS, f"numpy=={version('numpy')}", f"scikit-learn=={version('scikit-learn')}",
            f"joblib=={version('joblib')}"]
    if "pytorch" in frameworks:
        pins.append(f"torch=={version('torch')}")
    if "tensorflow" in frameworks:
        pins.append(f"tensorflow-cpu=={version('tensorflow-cpu')}")
    return pins


def ensure_venv(frameworks: tuple[str, ...], log: Path) -> Path:
    """Create (or reuse) the AWS stack's virtualenv; returns its python."""
    root = cache_dir() / "aws-stack"
    python = root / "bin" / "python"
    marker = root / "servekit-bench-installed.json"
    wanted = requirements(frameworks)
    have = set(json.loads(marker.read_text())) if marker.exists() else set()
    if python.exists() and set(wanted) <= have:
        return python
    root.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, stdout=out, stderr=out,
                           timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *wanted], check=True, stdout=out,
                       stderr=out, timeout=INSTALL_TIMEOUT_S)
    marker.write_text(json.dumps(sorted(have | set(wanted))))
    return python


LAUNCHER = '''\
"""Starts sagemaker-inference's stock model server; written by bench/aws_stack.py (see its docstring)."""
import os
import sys

import psutil

_process_iter = psutil.process_iter


def _own_session(*args, **kwargs):
    sid = os.getsid(0)
    for proc in _process_iter(*args, **kwargs):
        try:
            if os.getsid(proc.pid) == sid:
                yield proc
        except OSError:
            continue


psutil.process_iter = _own_session
from sagemaker_inference import model_server  # noqa: E402  (reads SAGEMAKER_MULTI_MODEL at import)

model_server.MMS_CONFIG_FILE = os.path.join(os.getcwd(), "sagemaker-mms.properties")
model_server.start_model_server(handler_service=sys.argv[1])
'''

_SERVICE = '''\
"""A handler service for {framework}, written by bench/aws_stack.py (see its docstring)."""
import os

import numpy as np
from sagemaker_inference import content_types, decoder, default_inference_handler, encoder
from sagemaker_inference.default_handler_service import DefaultHandlerService
from sagemaker_inference.transformer import Transformer


def _rows(input_data, content_type):
    array = decoder.decode(input_data, content_type)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    return array.astype(np.float32) if content_type in content_types.UTF8_TYPES else array


class HandlerService(DefaultHandlerService):
    class Defaults(default_inference_handler.DefaultInferenceHandler):
{methods}
    def __init__(self):
        super().__init__(transformer=Transformer(default_inference_handler=self.Defaults()))
'''

_METHODS = {
    "sklearn": '''
        def default_model_fn(self, model_dir, context=None):
            raise NotImplementedError("Please provide a model_fn implementation.")

        def default_input_fn(self, input_data, content_type, context=None):
            return _rows(input_data, content_type)

        def default_predict_fn(self, data, model, context=None):
            return model.predict(data)

        def default_output_fn(self, prediction, accept, context=None):
            return encoder.encode(prediction, accept), accept
''',
    "pytorch": '''
        def default_model_fn(self, model_dir, context=None):
            import torch
            path = os.path.join(model_dir, "model.pt")
            if not os.path.exists(path):
                raise FileNotFoundError("Failed to load model with default model_fn: missing file model.pt.")
            return torch.jit.load(path, map_location="cpu").eval()

        def default_input_fn(self, input_data, content_type, context=None):
            import torch
            return torch.from_numpy(_rows(input_data, content_type).astype(np.float32))

        def default_predict_fn(self, data, model, context=None):
            import torch
            with torch.no_grad():
                return model(data)

        def default_output_fn(self, prediction, accept, context=None):
            return encoder.encode(prediction.detach().cpu().numpy(), accept), accept
''',
    "tensorflow": '''
        def default_model_fn(self, model_dir, context=None):
            import tensorflow as tf
            versions = sorted((d for d in os.listdir(model_dir) if d.isdigit()), key=int)
            loaded = tf.saved_model.load(os.path.join(model_dir, versions[-1]) if versions else model_dir)
            signature = loaded.signatures["serving_default"]
            name = list(signature.structured_input_signature[1])[0]
            return loaded, signature, name

        def default_input_fn(self, input_data, content_type, context=None):
            return _rows(input_data, content_type).astype(np.float32)

        def default_predict_fn(self, data, model, context=None):
            _, signature, name = model
            outputs = signature(**{name: data})
            return next(iter(outputs.values())).numpy()

        def default_output_fn(self, prediction, accept, context=None):
            return encoder.encode(prediction, accept), accept
''',
}

#: What a user of AWS's scikit-learn container must supply: it has no default model_fn.
SKLEARN_SCRIPT = '''\
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
'''

#: The pipeline's scaler has no predict(); on AWS's stack the user's script says to transform.
TRANSFORM_SCRIPT = SKLEARN_SCRIPT + '''

def predict_fn(data, model):
    return model.transform(data)
'''


def write_service(directory: Path, framework: str) -> Path:
    """Write the launcher and the framework's handler service module into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "aws_launcher.py").write_text(LAUNCHER)
    methods = textwrap.indent(textwrap.dedent(_METHODS[framework]), " " * 8)
    (directory / f"{HANDLER_MODULE}.py").write_text(_SERVICE.format(framework=framework, methods=methods))
    return directory


def user_script(framework: str, transform: bool = False) -> str | None:
    if framework != "sklearn":
        return None  # the PyTorch and TensorFlow handler services load the artifact by default
    return TRANSFORM_SCRIPT if transform else SKLEARN_SCRIPT


def single_model_base(workdir: Path, model: Path, script: str | None) -> Path:
    """``$SAGEMAKER_BASE_DIR`` with ``model/`` = the artifact (linked) plus ``code/inference.py``."""
    base = workdir / "base"
    target = base / "model"
    target.mkdir(parents=True, exist_ok=True)
    for item in model.iterdir():
        (target / item.name).symlink_to(item.resolve())
    if script is not None:
        (target / "code").mkdir(exist_ok=True)
        (target / "code" / "inference.py").write_text(script)
    return base


def multi_model_base(workdir: Path, script: str | None) -> Path:
    """``$SAGEMAKER_BASE_DIR`` with ``models/code/inference.py``: one script for every model, as the
    scikit-learn container installs the user's module for all of MME's models."""
    base = workdir / "base"
    (base / "models").mkdir(parents=True, exist_ok=True)
    if script is not None:
        (base / "models" / "code").mkdir(exist_ok=True)
        (base / "models" / "code" / "inference.py").write_text(script)
    return base


def launch_env(python: Path, workdir: Path, base: Path, port: int, multi_model: bool, workers: int) -> dict[str, str]:
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "MMS_", "SERVE_", "PYTHON"))}
    address = f"http://127.0.0.1:{port}"
    env.update({
        "PATH": f"{python.parent}:{env.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(python.parent.parent),
        "PYTHONPATH": str(workdir),
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp),
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MULTI_MODEL": "true" if multi_model else "false",
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        "MMS_INFERENCE_ADDRESS": address,
        "MMS_MANAGEMENT_ADDRESS": address,
    })
    return env
