"""``./build.sh demo``: the churn pipeline end to end on a local SageMaker.

1. picks the harness backend: ``docker`` (the real images) when a Docker engine answers, else
   ``process`` (``python -m serve`` from this environment), and says which; with Docker, builds
   ``servekit-sklearn`` / ``servekit-tensorflow`` with ``./build.sh build`` when absent;
2. starts ``servekit local up`` on a free loopback port (a child process, stopped at the end);
3. trains the preprocessor, the Keras model and three per-region models (``train.py``);
4. deploys with plain boto3 (``deploy.py``): the serial pipeline, the same containers as a Direct
   multi-container endpoint, and a multi-model endpoint; invokes them with raw CSV rows;
5. checks the answers against the same models run in this process;
6. runs a batch transform of the whole churn table through the pipeline model (input and output in
   a local moto S3; records split by line, MultiRecord), checks every output row against the same
   models in this process, and compares its throughput with the same rows sent one by one to the
   real-time pipeline endpoint (``batch.py``); prints the harness's metrics;
7. deletes the endpoints, stops the harness and the S3 server (by PID) and removes the work directory.

Exit status 0 only when every step worked and every answer matched.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from examples.sklearn_tf_pipeline import batch
from examples.sklearn_tf_pipeline.serving import churn_schema

REPO = Path(__file__).resolve().parents[2]
IMAGES = {"sklearn": "servekit-sklearn:latest", "tensorflow": "servekit-tensorflow:latest"}
#: Served vs in-process predictions. The hop carries exact float64 text (repr) and TensorFlow runs
#: the same float32 graph, so differences are float32 rounding of a different batch layout at most.
RTOL, ATOL = 1e-5, 1e-6


def say(message: str = "") -> None:
    """Print and flush (the harness and builds write to the same terminal)."""
    print(message, flush=True)


def step(title: str) -> None:
    """A section heading."""
    say(f"\n=== {title}")


def image_present(image: str) -> bool:
    """Whether the local Docker engine has ``image``."""
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode == 0


def choose_backend(requested: str) -> str:
    """``docker`` when asked for or when an engine answers (building missing images), else ``process``."""
    from harness.backends.docker import docker_available

    if requested == "process":
        say("backend: process (asked for with --backend process): each container is `python -m serve` "
            "from this environment")
        return "process"
    if not docker_available():
        if requested == "docker":
            raise SystemExit("demo: --backend docker, but no Docker engine answers `docker info`; start one "
                             "with `bash .ci/setup-docker.sh` or use --backend process")
        say("backend: process -- no Docker engine answers `docker info`, so each container runs as "
            "`python -m serve` from this environment instead of in the images")
        return "process"
    say("backend: docker -- a Docker engine answers; the containers run the real images")
    for framework, image in IMAGES.items():
        if image_present(image):
            say(f"  image {image}: present")
            continue
        say(f"  image {image}: missing, building it: ./build.sh build {framework}")
        t0 = time.perf_counter()
        built = subprocess.run([str(REPO / "build.sh"), "build", framework], check=False)
        if built.returncode != 0:
            raise SystemExit(f"demo: `./build.sh build {framework}` failed (exit {built.returncode}); "
                             "see its output above, or run the demo with --backend process")
        say(f"  image {image}: built in {time.perf_counter() - t0:.0f} s")
    return "docker"


class Harness:
    """``servekit local up`` as a child process; stopped through its API, then by PID."""

    def __init__(self, backend: str, state_dir: Path) -> None:
        self.backend = backend
        self.state_dir = state_dir
        self.log_path = state_dir / "harness.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout_s: float = 60.0) -> str:
        """Start it on a free port; return its URL once it answers."""
        from harness.state import read_state_file

        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "harness.cli", "local", "up", "--port", "0", "--backend", self.backend,
                 "--state-dir", str(self.state_dir)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"demo: the harness exited with code {self.process.returncode}:\n"
                                 + self.log_path.read_text(errors="replace")[-3000:])
            record = read_state_file(self.state_dir)
            if record is not None and self._answers(str(record["url"])):
                self.url = str(record["url"])
                return self.url
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: the harness did not answer within {timeout_s:.0f} s; log {self.log_path}")
            time.sleep(0.1)

    @staticmethod
    def _answers(url: str) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(url + "/_servekit/endpoints", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self, endpoint: str) -> str:
        """``servekit local metrics ENDPOINT`` output."""
        from harness.cli import main as cli

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            cli(["local", "metrics", endpoint, "--url", self.url])
        return out.getvalue()

    def stop(self) -> None:
        """``servekit local down`` (stops every container it started), then make sure by PID."""
        if self.process is None:
            return
        if self.url and self.process.poll() is None:
            from harness.cli import main as cli

            with contextlib.redirect_stdout(io.StringIO()):
                cli(["local", "down", "--url", self.url, "--state-dir", str(self.state_dir), "--timeout", "60"])
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            say(f"  harness PID {self.process.pid} still running: SIGTERM")
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        say(f"stopped the harness (PID {self.process.pid}, exit code {self.process.returncode}) "
            "and every container it started")
        self.process = None


def expected_answers(trained: Any, rows: list[list[Any]]) -> dict[str, np.ndarray]:
    """The same predictions computed in this process: ``model.predict(preprocessor.transform(rows))``."""
    table = churn_schema.parse_rows(rows)
    features = trained.preprocessor.transform(table)
    expected = {"pipeline": trained.model.predict(features.astype(np.float32), verbose=0)[:, 0],
                "features": features}
    for name, classifier in trained.mme_models.items():
        expected[name] = classifier.predict_proba(table)[:, 1]
    return expected


def check(results: Any, expected: dict[str, np.ndarray]) -> list[str]:
    """Differences between served and in-process answers beyond RTOL / ATOL, as messages."""
    problems = []
    pairs = [("serial pipeline", results.pipeline, expected["pipeline"])]
    if results.direct:
        pairs.append(("direct, model container", results.direct, expected["pipeline"]))
        pairs.append(("direct, preprocessor payload", results.hop_features, expected["features"]))
    pairs += [(f"MME {name}", got, expected[name]) for name, got in results.mme.items()]
    for label, got, want in pairs:
        got_array = np.asarray(got, dtype=np.float64)
        if got_array.shape != np.shape(want) or not np.allclose(got_array, want, rtol=RTOL, atol=ATOL):
            problems.append(f"{label}: served {np.round(got_array, 6).tolist()} != in-process "
                            f"{np.round(np.asarray(want), 6).tolist()}")
        else:
            diff = float(np.max(np.abs(got_array - want))) if got_array.size else 0.0
            say(f"  {label:<30} matches in-process (max |diff| {diff:.1e})")
    return problems


def expected_batch(trained: Any, rows: list[list[Any]]) -> np.ndarray:
    """In-process predictions laid out as the batch job computes them: the table (about 200 KB) is one
    MultiRecord mini-batch, so one model call over every row (Keras' predict would otherwise split it
    into batches of 32, which can change the last bit of a float32)."""
    features = trained.preprocessor.transform(churn_schema.parse_rows(rows)).astype(np.float32)
    return np.asarray(trained.model.predict(features, batch_size=len(rows), verbose=0)[:, 0])


def check_batch(result: Any, expected: np.ndarray) -> list[str]:
    """Every batch output row against the in-process prediction of the same row, in the model's dtype
    (float32): the CSV answer is each float32's shortest round-tripping text, so equal values compare equal."""
    got = np.asarray(result.probabilities, dtype=np.float64).astype(expected.dtype)
    if got.shape != expected.shape:
        return [f"batch transform: {got.shape[0]} output rows for {expected.shape[0]} input rows"]
    exact = int(np.sum(got == expected))
    diff = float(np.max(np.abs(got.astype(np.float64) - expected))) if got.size else 0.0
    say(f"  {exact} of {got.size} rows equal the in-process prediction exactly; max |diff| {diff:.1e}")
    if exact != got.size:  # same rows, same model, same batch layout: nothing may differ
        worst = int(np.argmax(np.abs(got.astype(np.float64) - expected)))
        return [f"batch transform: {got.size - exact} rows differ from the in-process prediction; row {worst + 1}: "
                f"served {got[worst]!r} != in-process {expected[worst]!r}"]
    batch_rate, job_rate, realtime_rate = result.rates()
    say(f"  throughput: batch transform {batch_rate:.0f} records/s ({result.rows} records in "
        f"{result.transform_seconds:.2f} s; {job_rate:.0f} records/s counting the {result.job_seconds:.1f} s "
        f"from CreateTransformJob to Completed, container start included)")
    say(f"              real-time one by one {realtime_rate:.0f} records/s ({result.realtime_rows} InvokeEndpoint "
        f"calls in {result.realtime_seconds:.2f} s): batch is {batch_rate / realtime_rate:.0f}x")
    return []


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when everything worked."""
    parser = argparse.ArgumentParser(prog="./build.sh demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["auto", "docker", "process"], default="auto",
                        help="harness backend (default: docker when an engine answers, else process)")
    parser.add_argument("--hop", choices=["text/csv", "application/json"], default="text/csv",
                        help="format between the two pipeline containers (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--keep-workdir", action="store_true", help="keep artifacts and logs")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="servekit-demo-"))
    harness: Harness | None = None
    local_s3: batch.LocalS3 | None = None
    problems: list[str] = []
    try:
        step("1/6 backend and images")
        backend = choose_backend(args.backend)

        step("2/6 local SageMaker (and a local S3 for the batch transform)")
        local_s3 = batch.use_local_s3(workdir / "moto.log")
        started_s3 = f" (moto_server, PID {local_s3.process.pid})" if local_s3 and local_s3.process else ""
        say(f"S3: {os.environ['AWS_ENDPOINT_URL_S3']}{started_s3}")
        harness = Harness(backend, workdir / "state")
        url = harness.start()
        pid = harness.process.pid if harness.process else "?"
        say(f"servekit local up --backend {backend}: listening on {url} (PID {pid})")

        step("3/6 train (scikit-learn ColumnTransformer -> Keras) and package model.tar.gz artifacts")
        from examples.sklearn_tf_pipeline.train import train

        trained = train(workdir / "artifacts", epochs=args.epochs)
        manifest = trained.manifest
        say(f"{manifest['rows']} rows x {len(manifest['columns'])} columns "
            f"({', '.join(c['name'] for c in manifest['columns'])})")
        say(f"preprocessor: {manifest['n_features']} features; Keras holdout accuracy "
            f"{manifest['holdout_accuracy']:.3f} (churn rate {manifest['holdout_churn_rate']:.3f}); "
            f"{trained.timings['total_s']:.1f} s")
        for path in (trained.preprocessor_tar, trained.model_tar, *sorted(trained.mme_dir.glob("*.tar.gz"))):
            say(f"  {path.relative_to(workdir)}  ({path.stat().st_size // 1024} KiB)")

        step("4/6 deploy with boto3 (deploy.py --endpoint-url ... --mme), invoke")
        from examples.sklearn_tf_pipeline import deploy

        deploy_args = deploy.build_parser().parse_args([
            "--artifacts", str(trained.out_dir), "--endpoint-url", url, "--mme", "--hop", args.hop,
            "--name", "churn", "--repeat", "20"])
        expected = expected_answers(trained, deploy.SAMPLE_ROWS)

        def before_cleanup(results: deploy.Results) -> None:
            say(f"\ncompared with the same models in this process (rtol {RTOL:g}, atol {ATOL:g}):")
            problems.extend(check(results, expected))
            step("5/6 batch transform of the churn table (CreateTransformJob on the pipeline model)")
            assert harness is not None
            rows = churn_schema.make_dataset(manifest["rows"], seed=0)[0]
            sm, runtime, _ = deploy.clients(url, "us-east-1")
            pipeline = results.endpoints["pipeline"]  # deploy.py names the model like its endpoint
            batch_result = batch.run_batch(sm, runtime, pipeline, pipeline, rows, workdir / "state", say)
            problems.extend(check_batch(batch_result, expected_batch(trained, rows)))
            step("6/6 harness metrics (servekit local metrics ENDPOINT)")
            for endpoint in results.endpoints.values():
                assert harness is not None
                say(harness.metrics(endpoint).rstrip())

        deploy.run(deploy_args, say=say, before_cleanup=before_cleanup)
    finally:
        if harness is not None:
            harness.stop()
        if local_s3 is not None:
            local_s3.stop()
        if args.keep_workdir:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        say("\nFAILED: served answers differ from the in-process ones:\n  " + "\n  ".join(problems))
        return 1
    say(f"\ndemo finished in {time.perf_counter() - started:.0f} s: all answers match")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
