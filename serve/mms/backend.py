"""What multi-model-server runs as its "python": loads a model before MMS's worker code starts.

``serve.mms.config.render_python_shim`` points MMS at ``backend_main``; see its docstring.
"""

from __future__ import annotations

import logging
import os
import runpy
import sys

from serve.mms.service import load_model
from serve.mms.worker_env import worker_settings_from_env

log = logging.getLogger(__name__)

#: Frameworks whose loaded models survive a fork (MMS forks each worker from the backend process).
#: scikit-learn (NumPy/OpenBLAS) and PyTorch (which re-creates its thread pools after fork) do;
#: TensorFlow does not (its runtime threads do not survive a fork: the worker hangs), and nothing is
#: known about a custom handler. Those load in each worker, as stock MMS does.
PRELOAD_FRAMEWORKS = frozenset({"sklearn", "pytorch"})


def backend_main(argv: list[str]) -> int:
    """What multi-model-server runs as "python" (``serve.mms.config`` points MMS's --python here).

    For a model's backend process (``mms/model_service_worker.py``) the model is loaded *before*
    MMS's worker code starts: MMS waits for that process to report "MMS worker started." before it
    finishes registering the model, and it opens its HTTP port only after the start-up model is
    registered. So in single-model mode ``/ping`` is not answered until the model is loaded (stock
    MMS answers 200 at once and queues requests while workers load), and each worker forked from
    this process starts with the model already in memory (copy-on-write, as MMS's own
    ``preload_model`` does). Only frameworks in PRELOAD_FRAMEWORKS are preloaded. A preload
    failure is only logged: the forked worker then loads again and fails the way MMS reports
    (``POST /models`` answers 500, or the engine exits in single-model mode).

    Anything else MMS runs with its Python (the metrics collector) is run unchanged.
    """
    if not argv or not argv[0].endswith("model_service_worker.py"):
        os.execv(sys.executable, [sys.executable, *argv])
    model_dir = _argument(argv, "--model-path")
    model_name = _argument(argv, "--model-name")
    if model_dir and model_name:
        logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.INFO)
        try:
            _preload(model_dir, model_name)
        except Exception:  # MemoryError included: the forked worker retries and reports the failure
            log.warning("preloading model %s failed; its worker will load it again", model_name)
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name="__main__")
    return 1  # MMS's worker loop only returns on failure


def _argument(argv: list[str], name: str) -> str | None:
    try:
        return argv[argv.index(name) + 1]
    except (ValueError, IndexError):
        return None


def _preload(model_dir: str, model_name: str) -> None:
    framework = worker_settings_from_env().framework
    if framework not in PRELOAD_FRAMEWORKS:
        log.info("framework %s: each MMS worker loads model %s itself (no preload before fork)",
                 framework, model_name)
        return
    load_model(model_dir, model_name, report=False)
