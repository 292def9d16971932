"""python -m bench [--quick] [--out DIR] [--frameworks sklearn,pytorch,tensorflow]

Side by side in one run: AWS's stack as it ships (multi-model-server 1.1.11 + sagemaker-inference
1.10.1, own virtualenv), servekit native (also with SERVE_PREFORK=true), servekit mms and the
in-process floor. Writes results.json, table.md and PNG plots; exits 1 if any request failed or a
file is missing, never on the numbers. bench/README.md explains every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from bench import aws_stack, machine, plots, report, wrk
from bench.contenders import LABELS
from bench.plan import FRAMEWORKS, Plan, full_plan, quick_plan
from bench.run import Run
from bench.scenarios import batching, images, mme, pipeline, single, startup, streaming

SCENARIOS = {"startup": startup.measure, "single": single.measure, "mme": mme.measure,
             "pipeline": pipeline.measure, "images": images.measure, "streaming": streaming.measure,
             "batching": batching.measure}
EXPECTED = ("results.json", "table.md", "throughput.png", "p99.png", "memory.png", "load_time.png",
            "streaming.png")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.replace(" ", ",").split(",") if v)


def _positive_seconds(value: str) -> float:
    seconds = float(value)
    if not 0.5 <= seconds <= 600:  # also refuses nan
        raise argparse.ArgumentTypeError(f"--wrk-seconds must be between 0.5 and 600, not {value}")
    return seconds


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI size: scikit-learn, CSV, short runs (< 6 min)")
    parser.add_argument("--out", type=Path, help="output directory (default: bench/results/<date>-<host>/; "
                        "with --quick a new temporary directory)")
    parser.add_argument("--frameworks", type=_csv, help=f"comma-separated subset of {','.join(FRAMEWORKS)}")
    parser.add_argument("--contenders", type=_csv, help=f"comma-separated subset of {','.join(LABELS)}")
    parser.add_argument("--scenarios", type=_csv, help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--wrk-seconds", type=_positive_seconds,
                        help="seconds per wrk point (warm-up a fifth of it); default 10, 2 with --quick")
    parser.add_argument("--keep-workdir", action="store_true", help="keep artifacts and server logs")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    plan = quick_plan() if args.quick else full_plan()
    changes = {k: getattr(args, k) for k in ("frameworks", "contenders", "scenarios") if getattr(args, k)}
    unknown = set(changes.get("frameworks", ())) - set(FRAMEWORKS)
    unknown |= set(changes.get("scenarios", ())) - set(SCENARIOS)
    unknown |= set(changes.get("contenders", ())) - set(LABELS)
    if unknown:
        raise SystemExit(f"python -m bench: unknown name(s): {', '.join(sorted(unknown))}")
    if args.wrk_seconds:
        changes.update(wrk_seconds=args.wrk_seconds, warmup_seconds=args.wrk_seconds / 5)
    return dataclasses.replace(plan, **changes)


def out_dir(args: argparse.Namespace) -> Path:
    if args.out:
        return args.out
    if args.quick:
        return Path(tempfile.mkdtemp(prefix="servekit-bench-quick-"))
    return RESULTS_DIR / f"{time.strftime('%Y-%m-%d')}-{machine.host()}"


def prepare(run: Run, out: Path) -> None:
    if "aws" not in run.plan.contenders:
        return
    if shutil.which("java") is None:
        run.fail("java is missing: AWS's stack (and servekit mms) need it (apt-get install -y default-jre-headless)")
        return
    run.say(f"AWS stack virtualenv: {aws_stack.cache_dir() / 'aws-stack'} (created on first use)")
    try:
        run.aws_python = aws_stack.ensure_venv(run.plan.frameworks, out / "aws-venv.log")
    except Exception as exc:  # noqa: BLE001 - recorded; the other contenders still run
        run.fail(f"AWS stack virtualenv: {exc!r} (see {out / 'aws-venv.log'})")


def write(run: Run, out: Path, command: str) -> list[str]:
    run.results["meta"] = {**machine.describe(), "command": command, "plan": dataclasses.asdict(run.plan),
                           "contenders": run.contenders(), "duration_s": time.monotonic() - run.started}
    run.results["failures"] = run.failures
    (out / "results.json").write_text(json.dumps(run.results, indent=2, default=str))
    (out / "table.md").write_text(report.markdown(run.results))
    try:
        plots.draw_all(run.results, out)
    except Exception as exc:  # noqa: BLE001 - a missing plot is reported below
        run.fail(f"plots: {exc!r}")
    return [name for name in EXPECTED if not (out / name).is_file() or (out / name).stat().st_size == 0]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not wrk.available():
        print(f"python -m bench: {wrk.INSTALL_HINT}", file=sys.stderr)
        return 2
    plan, out = make_plan(args), out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="servekit-bench-work-"))
    run = Run(plan, workdir)
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        prepare(run, out)
        for name in plan.scenarios:
            SCENARIOS[name](run)
    finally:
        missing = write(run, out, command)
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print((out / "table.md").read_text())
    print(f"results: {out}")
    for name in missing:
        print(f"python -m bench: {name} was not produced", file=sys.stderr)
    if run.failures:
        print(f"python -m bench: {len(run.failures)} failure(s), see table.md", file=sys.stderr)
    return 1 if missing or run.failures else 0


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends a run as Ctrl-C does, through every ``finally`` that stops a server it started;
    Python's default action would exit at once and leave them running (AWS's Java among them)."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("python -m bench: interrupted; the servers it started are stopped, and what it measured "
              "is in the results it wrote", file=sys.stderr)
        sys.exit(130)
