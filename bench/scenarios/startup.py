"""The start-up floor: a fresh ``python -c 'import <framework>; load the artifact'``, no server."""

from __future__ import annotations

import subprocess
import sys
import time

from bench import artifacts
from bench.run import Run

LOADERS = {
    "sklearn": "import sklearn, joblib; joblib.load({dir!r} + '/model.joblib')",
    "pytorch": "import torch; torch.jit.load({dir!r} + '/model.pt')",
    "tensorflow": "import tensorflow as tf; tf.saved_model.load({dir!r} + '/1')",
}


def measure(run: Run) -> None:
    for framework in run.plan.frameworks:
        artifact = artifacts.make(framework, run.workdir / "artifacts" / framework / "startup")
        code = LOADERS[framework].format(dir=str(artifact.path))
        for round_index in range(run.plan.rounds):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                run.fail(f"start-up floor {framework}: {done.stderr.decode(errors='replace')[-1000:]}")
                continue
            run.add("startup_floor", {"framework": framework, "round": round_index, "seconds": seconds})
