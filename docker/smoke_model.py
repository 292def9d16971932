"""A tiny model for an image's own framework, made inside that image, for build.sh's doctor smoke check.

    docker run --rm --entrypoint python -v DIR:/smoke IMAGE /smoke/smoke_model.py FRAMEWORK /smoke

writes ``/smoke/model/`` (the artifact as ``/opt/ml/model`` holds it, in the layout docs/handlers.md
gives for the framework) and ``/smoke/sample.json`` (one valid request of four features). It runs with
the image's Python, so the artifact is saved with the very framework version the image serves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

FEATURES = 4
ROWS = np.random.default_rng(0).normal(size=(32, FEATURES)).astype("float32")


def sklearn_model(out: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    labels = (ROWS[:, 0] > 0).astype(int)
    joblib.dump(LogisticRegression().fit(ROWS, labels), out / "model.joblib")


def pytorch_model(out: Path) -> None:
    import torch

    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(torch.nn.Linear(FEATURES, 2).eval()), str(out / "model.pt"))


def tensorflow_model(out: Path) -> None:
    import tensorflow as tf

    class Linear(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable(tf.ones((FEATURES, 2)))

        @tf.function(input_signature=[tf.TensorSpec([None, FEATURES], tf.float32)])
        def __call__(self, rows: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"scores": tf.matmul(rows, self.weights)}

    module = Linear()
    tf.saved_model.save(module, str(out / "1"), signatures={"serving_default": module.__call__})


BUILDERS = {"sklearn": sklearn_model, "pytorch": pytorch_model, "tensorflow": tensorflow_model}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in BUILDERS:
        print(f"usage: smoke_model.py {{{','.join(BUILDERS)}}} OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[1])
    (out / "model").mkdir(parents=True, exist_ok=True)
    BUILDERS[argv[0]](out / "model")
    (out / "sample.json").write_text(json.dumps(ROWS[:2].tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
