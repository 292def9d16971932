"""Server-side batching (docs/engines.md, "Batching"): servekit's native engine unbatched against
batched, with servekit's setting and with AWS's names and defaults, on the small PyTorch and
TensorFlow models, wrk at concurrency 1 and 16 with one JSON row per request. Before the load, each
variant answers ``CHECKED`` distinct rows sent at once, compared with the in-process answers to each
row alone (the floor's ``ServedModel.invoke``)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench import artifacts, contenders, wrk
from bench.run import Run

FRAMEWORKS = ("pytorch", "tensorflow")
CONCURRENCY = (1, 16)
#: Rows sent at once to check the answers.
CHECKED = 32
FRONT = {"SERVE_PREFORK": "false"}
PREFORK = {"SERVE_PREFORK": "true"}
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
#: The label of servekit's default path (prefork, unbatched), the second baseline of the report.
DEFAULT = "unbatched, default (prefork)"
#: Variant label -> settings, per framework; the first is the baseline.
VARIANTS: dict[str, dict[str, dict[str, str]]] = {
    # PyTorch's BLAS runs a batch's matrix product on every core's thread by default; with two cores
    # shared by the front and the workers those threads wait for each other, so the same pairs are
    # also measured with one thread per worker (OMP_NUM_THREADS=1, what AWS's TF Serving container
    # sets when unset, docs/sagemaker-contract.md §12.1).
    # Unset, batching turns prefork off (the front's queue gathers requests), so the baseline is the
    # front path (SERVE_PREFORK=false); the default path (prefork, unbatched) is measured beside it,
    # and batching in each prefork worker (SERVE_PREFORK=true) beside both.
    "pytorch": {
        "unbatched": FRONT,
        DEFAULT: {},
        "SERVE_BATCH_MAX_SIZE=16": {"SERVE_BATCH_MAX_SIZE": "16"},
        "SERVE_BATCH_MAX_SIZE=16, SERVE_PREFORK=true": {"SERVE_BATCH_MAX_SIZE": "16", **PREFORK},
        "SAGEMAKER_TS_BATCH_SIZE=16 (AWS's 100 ms delay)": {"SAGEMAKER_TS_BATCH_SIZE": "16"},
        "unbatched, OMP_NUM_THREADS=1": {**FRONT, **ONE_THREAD},
        "unbatched, default (prefork), OMP_NUM_THREADS=1": ONE_THREAD,
        "SERVE_BATCH_MAX_SIZE=16, OMP_NUM_THREADS=1": {"SERVE_BATCH_MAX_SIZE": "16", **ONE_THREAD},
        "SERVE_BATCH_MAX_SIZE=16, SERVE_PREFORK=true, OMP_NUM_THREADS=1":
            {"SERVE_BATCH_MAX_SIZE": "16", **PREFORK, **ONE_THREAD},
    },
    "tensorflow": {
        "unbatched": FRONT,
        DEFAULT: {},
        "SERVE_BATCH_MAX_SIZE=16": {"SERVE_BATCH_MAX_SIZE": "16"},
        "SERVE_BATCH_MAX_SIZE=16, SERVE_PREFORK=true": {"SERVE_BATCH_MAX_SIZE": "16", **PREFORK},
        "SAGEMAKER_TFS_ENABLE_BATCHING=true (AWS's 8, 1000 µs)": {"SAGEMAKER_TFS_ENABLE_BATCHING": "true"},
        "SAGEMAKER_TFS_ENABLE_BATCHING=true, SERVE_PREFORK=true": {"SAGEMAKER_TFS_ENABLE_BATCHING": "true",
                                                                   **PREFORK},
    },
}


def _rows() -> list[list[float]]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(CHECKED, 4)).round(3).tolist()


def _alone(framework: str, artifact: artifacts.Artifact, rows: list[list[float]]) -> list[bytes]:
    """Each row's answer from the model in this process, one request at a time."""
    from handlers.base import Request
    from handlers.model import ServedModel
    from handlers.registry import handler_class

    served = ServedModel.load(handler_class(framework)(), str(artifact.path))
    try:
        return [served.invoke(Request(json.dumps([row]).encode(), "application/json", "application/json")).body
                for row in rows]
    finally:
        served.unload()


def _check(server: contenders.Server, rows: list[list[float]], alone: list[bytes]) -> dict[str, object]:
    """Whether the rows sent at once get the answers they get alone: byte for byte, and the largest
    difference between the numbers."""
    def send(row: list[float]) -> bytes:
        status, body, _ = contenders.post(server.port, "/invocations", json.dumps([row]).encode(), "application/json")
        if status != 200:
            raise RuntimeError(f"answered {status}: {body[:300]!r}")
        return body

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, rows))
    numbers = [np.asarray(_predictions(a), dtype=float) for a in answers]
    expected = [np.asarray(_predictions(a), dtype=float) for a in alone]
    return {"identical": answers == alone,
            "max_abs_diff": max(float(np.max(np.abs(n - e))) for n, e in zip(numbers, expected, strict=True))}


def _predictions(body: bytes) -> object:
    parsed = json.loads(body)
    return parsed["predictions"] if isinstance(parsed, dict) else parsed


def _one(run: Run, framework: str, artifact: artifacts.Artifact, label: str, round_index: int,
         checked: tuple[list[list[float]], list[bytes]]) -> None:
    launch = contenders.Launch(framework, artifact.path, run.workers(), env=VARIANTS[framework][label])
    server = contenders.start("native", launch, run.workdir, run.plan.start_deadline_s)
    meta = {"framework": framework, "variant": label, "round": round_index, "contender": "native"}
    try:
        run.add("batching_answers", {**meta, **_check(server, *checked)})
        body, paths = artifacts.body(framework, "json"), ["/invocations"]
        wrk.run(server.url, paths, body, "application/json", max(CONCURRENCY), run.plan.warmup_seconds)
        for concurrency in CONCURRENCY:
            result = wrk.run(server.url, paths, body, "application/json", concurrency, run.plan.wrk_seconds,
                             server.tree)
            run.add("batching", {**meta, **result.as_dict()})
            if result.errors:
                run.fail(f"batching {meta}: {result.errors} failed requests at c{concurrency}")
    finally:
        server.stop(run.plan.stop_grace_s)


def measure(run: Run) -> None:
    for framework in [f for f in FRAMEWORKS if f in run.plan.frameworks]:
        artifact = artifacts.make(framework, run.workdir / "artifacts" / framework / "batching")
        rows = _rows()
        checked = (rows, _alone(framework, artifact, rows))
        labels = list(VARIANTS[framework])
        for round_index in range(run.plan.rounds):
            for label in labels if round_index % 2 == 0 else labels[::-1]:
                run.say(f"batching {framework} round {round_index + 1}: {label}")
                try:
                    _one(run, framework, artifact, label, round_index, checked)
                except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                    run.fail(f"batching {framework} {label}: {exc}")
