"""Side-by-side benchmark: the native engine vs multi-model-server vs the in-process floor.

One run measures all three on the same machine and reports ratios, because absolute numbers on a
shared 2-core machine drift between runs while ratios measured together hold:

* latency at concurrency 1 (single-model mode, a tiny scikit-learn model, JSON in and out, one
  keep-alive HTTP connection), against the floor: decode + predict + encode in this process;
* MME load time per model and memory (PSS of the server's process tree) per additional model.

Usage: python -m bench.serve_bench [--requests N] [--models N] [--engines native,mms] [--json FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.models import sklearn_artifact
from tests.support.server import RunningServer, run_server

MB = 1024 * 1024


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick: Callable[[float], float] = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": pick(0.5) * 1000, "p99_ms": pick(0.99) * 1000, "mean_ms": statistics.fmean(ordered) * 1000}


def floor_latency(model_dir: Path, body: bytes, requests: int) -> dict[str, float]:
    """Decode + predict + encode in this process: what no server can beat."""
    from handlers.base import Request
    from handlers.model import ServedModel
    from handlers.registry import handler_class

    served = ServedModel.load(handler_class("sklearn")(), str(model_dir))
    request = Request(body=body, content_type="application/json", accept="application/json")
    for _ in range(50):
        served.invoke(request)
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        served.invoke(request)
        samples.append(time.perf_counter() - started)
    served.unload()
    return percentiles(samples)


def http_latency(server: RunningServer, path: str, body: bytes, requests: int) -> dict[str, float]:
    """Latency over one keep-alive connection. http.client sends headers and body in one write, so
    Nagle's algorithm and delayed ACKs do not add milliseconds that are the client's, not the server's."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}

    def call() -> None:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")

    for _ in range(50):
        call()
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    connection.close()
    return percentiles(samples)


def mme_costs(engine: str, artifacts: list[Path]) -> dict[str, float]:
    """Load every artifact into one MME server; time each load and the memory each adds."""
    env = {"SERVE_ENGINE": engine, "SERVE_FRAMEWORK": "sklearn", "SAGEMAKER_MULTI_MODEL": "true"}
    with run_server(env) as server, httpx.Client(base_url=server.url, timeout=300) as client:
        load_times = []
        first_pss = 0
        for i, path in enumerate(artifacts):
            started = time.perf_counter()
            client.post("/models", json={"model_name": f"m{i}", "url": str(path)}).raise_for_status()
            load_times.append(time.perf_counter() - started)
            if i == 0:
                first_pss = server.pss_bytes()
        last_pss = server.pss_bytes()
    return {
        "load_median_ms": statistics.median(load_times[1:]) * 1000,
        "pss_with_one_model_mb": first_pss / MB,
        "pss_per_additional_model_mb": (last_pss - first_pss) / (len(artifacts) - 1) / MB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per engine (default 2000)")
    parser.add_argument("--models", type=int, default=10, help="models loaded in the MME run (default 10)")
    parser.add_argument("--engines", default="native,mms", help="comma-separated engines (default native,mms)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="servekit-bench-") as tmp:
        root = Path(tmp)
        single = sklearn_artifact(root / "single" / "model")
        body = json.dumps(single.rows[:1].tolist()).encode()
        artifacts = [sklearn_artifact(root / f"m{i}" / "model", seed=i).path for i in range(args.models)]
        print(f"floor: in-process decode+predict+encode, {args.requests} requests", file=sys.stderr)
        results["floor"] = {"latency": floor_latency(single.path, body, args.requests)}
        for engine in engines:
            print(f"{engine}: single-model latency, {args.requests} requests", file=sys.stderr)
            env = {"SERVE_ENGINE": engine, "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(single.path),
                   "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
            with run_server(env) as server:
                latency = http_latency(server, "/invocations", body, args.requests)
            print(f"{engine}: MME, {args.models} models", file=sys.stderr)
            results[engine] = {"latency": latency, "mme": mme_costs(engine, artifacts)}

    floor_p50 = results["floor"]["latency"]["p50_ms"]
    print(f"\n{'':8} {'p50 ms':>8} {'p99 ms':>8} {'p50 - floor':>12} {'load ms':>8} {'MB/model':>9}")
    print(f"{'floor':8} {floor_p50:8.3f} {results['floor']['latency']['p99_ms']:8.3f}")
    for engine in engines:
        lat, mme = results[engine]["latency"], results[engine]["mme"]
        print(f"{engine:8} {lat['p50_ms']:8.3f} {lat['p99_ms']:8.3f} {lat['p50_ms'] - floor_p50:12.3f} "
              f"{mme['load_median_ms']:8.0f} {mme['pss_per_additional_model_mb']:9.1f}")
    if "native" in results and "mms" in results:
        native, mms = results["native"], results["mms"]
        overhead = (mms["latency"]["p50_ms"] - floor_p50) / max(1e-9, native["latency"]["p50_ms"] - floor_p50)
        memory = mms["mme"]["pss_per_additional_model_mb"] / native["mme"]["pss_per_additional_model_mb"]
        print("\nratios (mms / native): "
              f"p50 {mms['latency']['p50_ms'] / native['latency']['p50_ms']:.2f}x, "
              f"overhead over floor {overhead:.2f}x, "
              f"load time {mms['mme']['load_median_ms'] / native['mme']['load_median_ms']:.2f}x, "
              f"memory per model {memory:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
