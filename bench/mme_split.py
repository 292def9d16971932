"""python -m bench.mme_split [--models 2,10] [--seconds S] [--rounds R] [--no-aws]

Where an MME round-robin request's CPU goes: the scikit-learn CSV request sent by wrk (concurrency
16) round robin over each count of loaded models, with each process's user and system CPU read
before and after, divided by the requests served. Rows per count:

- N: servekit's native engine in MME mode. Front: the process that parses HTTP and hands each
  request to its model's worker; workers: every other process of the server's tree (the models'
  workers, the fork parent, the spare);
- "N, pool": the native engine with SERVE_MME_POOL=true: one process per CPU, each holding every
  model and answering HTTP itself (front: the process that only supervises them and answers the
  ``/models`` API; docs/engines.md, "MME pool");
- "N, AWS's stack": multi-model-server 1.1.11 + sagemaker-inference 1.10.1 as it ships (front: MMS's
  Java process). Left out with ``--no-aws``; its virtualenv is installed on first use.

Every row also gives ``ServedModel.invoke`` round robin over the same models in this process, no
server (in-process). Each round ends with one of the models served alone on the default
single-model path (prefork), "1, no hop". After the table, each servekit row's requests per second
over AWS's stack's, at the same count in the same round. A run where a request failed or a server's
processes changed is refused.

The workers' figure above the in-process one is what a request costs for crossing into a process of
its own; docs/engines.md ("Issue 25's goals in one full run") reads the MME goal's limit from it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import artifacts, aws_stack, contenders, procs, wrk
from bench.plan import full_plan

#: The full plan's highest concurrency, start-up deadline, stop grace and warm-up (before the
#: measured run, every model's worker has answered and the spare worker is forked).
PLAN = full_plan()
CONCURRENCY = max(PLAN.concurrency)
LOAD_TIMEOUT_S = 60.0
CpuTimes = dict[int, tuple[float, float]]  # pid: (user, system) seconds
#: The rows of the MME pool (SERVE_MME_POOL=true), a process per CPU holding every model.
POOL = "pool"


@dataclass
class Split:
    models: int
    rps: float
    front_user_ms: float
    front_system_ms: float
    workers_user_ms: float
    workers_system_ms: float
    in_process_ms: float


def _per_request_ms(before: CpuTimes, after: CpuTimes, pids: set[int], requests: int) -> tuple[float, float]:
    user = sum(after[p][0] - before[p][0] for p in pids)
    system = sum(after[p][1] - before[p][1] for p in pids)
    return user / requests * 1000, system / requests * 1000


def measured_run(server: contenders.Server, paths: list[str], seconds: float) -> tuple[wrk.WrkResult, CpuTimes,
                                                                                       CpuTimes]:
    """wrk's warm-up, then the measured run with every process's CPU read around it; refused when a
    request failed or the server's processes changed meanwhile (a process's CPU would be lost)."""
    body = artifacts.body("sklearn", "csv")
    wrk.run(server.url, paths, body, "text/csv", CONCURRENCY, PLAN.warmup_seconds)
    tree = procs.settled_tree(server.tree)
    before = procs.cpu_split(tree)
    result = wrk.run(server.url, paths, body, "text/csv", CONCURRENCY, seconds)
    after = procs.cpu_split(tree)
    if result.errors or not result.requests:
        raise RuntimeError(f"{result.errors} of {result.requests} requests failed:\n{server.log_tail()}")
    if set(after) != set(before) or {proc.pid for proc in server.tree()} != set(before):
        raise RuntimeError("the server's processes changed during the measured run: run it again")
    return result, before, after


def in_process_ms(models: list[artifacts.Artifact], seconds: float) -> float:
    """CPU per request of ``ServedModel.invoke`` round robin over ``models`` in this process."""
    from handlers.base import Request
    from handlers.model import ServedModel
    from handlers.registry import handler_class

    served = [ServedModel.load(handler_class("sklearn")(), str(m.path), f"m{i}") for i, m in enumerate(models)]
    request = Request(body=artifacts.body("sklearn", "csv"), content_type="text/csv", accept="application/json")
    try:
        for model in served * 20:
            model.invoke(request)
        count, started, deadline = 0, time.process_time(), time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for model in served:
                model.invoke(request)
            count += len(served)
        return (time.process_time() - started) / count * 1000
    finally:
        for model in served:
            model.unload()


def load_models(server: contenders.Server, models: list[artifacts.Artifact]) -> None:
    for i, model in enumerate(models):
        spec = json.dumps({"model_name": f"m{i}", "url": str(model.path)}).encode()
        status, answer, _ = contenders.post(server.port, "/models", spec, "application/json", LOAD_TIMEOUT_S)
        if status != 200:
            raise RuntimeError(f"{server.contender}: loading m{i} answered {status}: {answer[:300]!r}")


def measure(models: list[artifacts.Artifact], seconds: float, workdir: Path, contender: str = "native",
            aws_python: Path | None = None) -> Split:
    """MME, the models loaded, wrk's round robin over them: servekit's native engine ("native"), its
    pool ("pool", SERVE_MME_POOL=true: the front only supervises) or AWS's stack ("aws", with
    ``aws_python``; its front is MMS's Java process)."""
    workers = contenders.mme_workers(contender, os.cpu_count() or 1)
    launch = contenders.Launch("sklearn", None, workers, aws_stack.user_script("sklearn"))
    server = contenders.start(contender, launch, workdir, PLAN.start_deadline_s, aws_python)
    try:
        load_models(server, models)
        result, before, after = measured_run(server, [f"/models/m{i}/invoke" for i in range(len(models))], seconds)
        front = java_pid(server) if contender == "aws" else server.process.pid
    finally:
        server.stop(PLAN.stop_grace_s)
    front_ms = _per_request_ms(before, after, {front}, result.requests)
    workers_ms = _per_request_ms(before, after, set(after) - {front}, result.requests)
    return Split(len(models), result.rps, *front_ms, *workers_ms, in_process_ms(models, seconds / 2))


def java_pid(server: contenders.Server) -> int:
    """AWS's stack: the pid of MMS's front end, the one Java process of the server's tree."""
    java = [proc.pid for proc in server.tree() if proc.name() == "java"]
    if len(java) != 1:
        raise RuntimeError(f"AWS's stack: expected one Java process, found {len(java)}")
    return java[0]


def measure_no_hop(model: artifacts.Artifact, seconds: float, workdir: Path) -> Split:
    """One model on the single-model path (prefork by default), a worker per CPU as the bench's
    single-model scenario runs it: every process's CPU, in the workers' columns."""
    launch = contenders.Launch("sklearn", model.path, os.cpu_count() or 1)
    server = contenders.start("native", launch, workdir, PLAN.start_deadline_s)
    try:
        result, before, after = measured_run(server, ["/invocations"], seconds)
    finally:
        server.stop(PLAN.stop_grace_s)
    every = _per_request_ms(before, after, set(after), result.requests)
    return Split(1, result.rps, 0.0, 0.0, *every, in_process_ms([model], seconds / 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mme_split", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="2,10", help="model counts to measure, comma-separated (default 2,10)")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per wrk run (default 6)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds, each measuring every count in turn, then the no-hop row (default 2)")
    parser.add_argument("--no-aws", action="store_true",
                        help="leave out AWS's stack (its virtualenv is installed on first use, minutes)")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.rounds < 1:
        parser.error("--seconds and --rounds must be at least 1")
    try:
        counts = [int(n) for n in args.models.split(",")]
    except ValueError:
        parser.error(f"--models takes whole numbers separated by commas, not {args.models!r}")
    if not counts or min(counts) < 1:
        parser.error("--models: every count must be at least 1")
    if not wrk.available():
        print("python -m bench.mme_split: wrk is missing (apt-get install -y wrk)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-mme-split-") as tmp:
        work = Path(tmp)
        try:
            aws_python = None if args.no_aws else aws_stack.ensure_venv(("sklearn",), work / "aws-venv.log")
            models = artifacts.make_many("sklearn", work / "models", max(counts))
            ratios = measure_rounds(models, counts, args, work, aws_python)
        except (RuntimeError, subprocess.CalledProcessError) as failed:
            print(f"python -m bench.mme_split: {failed}", file=sys.stderr)
            return 1
    print_ratios(ratios)
    return 0


def measure_rounds(models: list[artifacts.Artifact], counts: list[int], args: argparse.Namespace, work: Path,
                   aws_python: Path | None) -> dict[str, list[float]]:
    """Print the table's rows, round by round; returns each row's requests per second over AWS's
    stack's at the same count in the same round (when it is measured)."""
    print("| models | req/s | front user ms | front sys ms | workers user ms | workers sys ms | in-process ms |")
    print("|---|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for count in counts:
            rows = {f"{count}": measure(models[:count], args.seconds, work),
                    f"{count}, {POOL}": measure(models[:count], args.seconds, work, "pool")}
            if aws_python is not None:
                aws = rows[f"{count}, AWS's stack"] = measure(models[:count], args.seconds, work, "aws", aws_python)
                for label in (f"{count}", f"{count}, {POOL}"):
                    ratios.setdefault(label, []).append(rows[label].rps / aws.rps)
            for label, split in rows.items():
                print_row(label, split)
        print_row("1, no hop", measure_no_hop(models[0], args.seconds, work))
    return ratios


def print_ratios(ratios: dict[str, list[float]]) -> None:
    """After the table, a blank line, then each row's ratio to AWS's stack, every round's."""
    if ratios:
        print()
    for label, values in ratios.items():
        print(f"{label}: {', '.join(f'{v:.2f}' for v in values)} times AWS's stack's requests per second")


def print_row(label: str, s: Split) -> None:
    print(f"| {label} | {s.rps:.0f} | {s.front_user_ms:.3f} | {s.front_system_ms:.3f} | "
                      f"{s.workers_user_ms:.3f} | {s.workers_system_ms:.3f} | {s.in_process_ms:.3f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
