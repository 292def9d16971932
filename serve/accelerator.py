"""The image's accelerator (``SERVEKIT_ACCELERATOR``, label ``com.servekit.accelerator``) and whether a
GPU is visible at start.

The Dockerfiles set both from build argument ``ACCELERATOR`` (docs/images.md, "GPU images"); this
module is their one Python declaration (serve/settings.py reads the variable, harness/doctor the label).
The GPU check reads only ``/dev`` and the environment: importing torch or TensorFlow, or initialising
CUDA, in the server's first process would break the workers it forks (docs/handlers.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: Set in every servekit image, with the label below: cpu or gpu.
ACCELERATOR_VARIABLE = "SERVEKIT_ACCELERATOR"
ACCELERATOR_LABEL = "com.servekit.accelerator"
CPU = "cpu"
GPU = "gpu"
ACCELERATORS = (CPU, GPU)
#: Where the NVIDIA container toolkit puts the GPUs it passes in: /dev/nvidia0, /dev/nvidia1, ...
DEV_DIR = Path("/dev")
#: NVIDIA_VISIBLE_DEVICES values that pass no GPU in: "void" or empty behaves as runc, "none" gives the
#: driver but no device (NVIDIA container toolkit, "Environment variables (OCI spec)").
_NO_DEVICES = ("void", "none", "")


def missing_gpu(dev_dir: Path = DEV_DIR, environ: Mapping[str, str] | None = None) -> str | None:
    """Why no NVIDIA GPU is visible to this process, or None when one is."""
    env = os.environ if environ is None else environ
    visible = env.get("NVIDIA_VISIBLE_DEVICES")
    if visible is not None and visible.strip().lower() in _NO_DEVICES:
        return f"NVIDIA_VISIBLE_DEVICES={visible!r}"
    if not any(dev_dir.glob("nvidia[0-9]*")):
        return f"no {dev_dir / 'nvidia'}* device"
    return None


def no_gpu_line(accelerator: str | None, required: bool, dev_dir: Path = DEV_DIR,
                environ: Mapping[str, str] | None = None) -> str | None:
    """The one line a GPU image says at start when it sees no GPU (None otherwise); ``required``
    (SERVE_REQUIRE_GPU) words it as the refusal it then is."""
    if accelerator != GPU:
        return None
    reason = missing_gpu(dev_dir, environ)
    if reason is None:
        return None
    outcome = ("SERVE_REQUIRE_GPU=true: not starting" if required
               else "models run on the CPU (SERVE_REQUIRE_GPU=true refuses to start instead)")
    return (f"GPU image ({ACCELERATOR_VARIABLE}={GPU}) but no GPU is visible: {reason} "
            f"(docker run --gpus all, or a GPU instance type); {outcome}")
