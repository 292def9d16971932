"""``servekit doctor IMAGE ...``: the flags, the output formats and the exit status."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.doctor import facts
from harness.doctor.image import DoctorError
from harness.doctor.options import DoctorOptions
from harness.doctor.run import run_doctor

EPILOG = """\
exit status: 0 when no check failed, 1 when one did, 2 when the doctor could not run.
example: servekit doctor servekit-sklearn:latest --model-data model/ --sample text/csv:row.csv --mme
docs/doctor.md lists every check, the SageMaker message it prevents and the fix."""


def _env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--env {text!r}: expected KEY=VALUE")
    return key, value


def _sample(text: str) -> tuple[str, bytes]:
    content_type, sep, path = text.partition(":")
    if not sep or "/" not in content_type:
        raise argparse.ArgumentTypeError(f"--sample {text!r}: expected CONTENT_TYPE:FILE, e.g. text/csv:row.csv")
    try:
        return content_type, Path(path).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"--sample {text!r}: cannot read {path}: {exc.strerror}") from None


def add_parser(top: Any) -> None:
    """Add ``doctor`` to the ``servekit`` subcommands (``top`` is argparse's subparsers action)."""
    p = top.add_parser("doctor", help="run an image as SageMaker does and say why it would fail there",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="a local image (docker image ls)")
    p.add_argument("--model-data", help="model directory, model.tar.gz or s3:// archive, mounted read-only at "
                   "/opt/ml/model (with --mme: loaded as one model from /opt/ml/models)")
    p.add_argument("--instance-type", default="ml.m5.large", help="CPU, memory and architecture (default: %(default)s)")
    p.add_argument("--env", action="append", type=_env, default=[], metavar="KEY=VALUE",
                   help="ContainerDefinition.Environment (repeatable)")
    p.add_argument("--mme", action="store_true", help="run as a multi-model endpoint's container and check the MME API")
    p.add_argument("--sample", type=_sample, metavar="CONTENT_TYPE:FILE",
                   help="one valid request body; enables the invocation checks")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--junit", metavar="FILE", help="also write the report as JUnit XML")
    p.add_argument("--image-size-limit-gb", type=float, default=facts.IMAGE_SIZE_LIMIT_GIB,
                   help="image size limit in GiB (default: SageMaker's %(default)g)")
    p.add_argument("--startup-timeout", type=float, default=facts.STARTUP_TIMEOUT_S,
                   help="ContainerStartupHealthCheckTimeoutInSeconds (default: %(default)g, SageMaker's)")
    p.add_argument("--stop-grace", type=float, default=facts.STOP_GRACE_S,
                   help="seconds the container has to exit after SIGTERM (default: %(default)g, SageMaker's)")
    p.add_argument("--invocation-timeout", type=float, default=facts.INVOCATION_TIMEOUT_S,
                   help="seconds one invocation may take (default: %(default)g, SageMaker's)")
    p.add_argument("--check-oom", action="store_true", help="with --mme: load copies of the model until 507 "
                   "(pass) or an OOM kill (fail)")
    p.set_defaults(func=cmd_doctor)


def options_from(args: argparse.Namespace) -> DoctorOptions:
    """The DoctorOptions the flags describe."""
    return DoctorOptions(model_data=args.model_data, instance_type=args.instance_type, env=dict(args.env),
                         mme=args.mme, sample=args.sample, image_size_limit_gb=args.image_size_limit_gb,
                         startup_timeout_s=args.startup_timeout, check_oom=args.check_oom,
                         stop_grace_s=args.stop_grace, invocation_timeout_s=args.invocation_timeout,
                         progress=lambda line: print(f"[doctor] {line}", file=sys.stderr, flush=True))


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run the doctor; 0 when no check failed, 1 when one did, 2 when it could not run."""
    if args.check_oom and not args.mme:
        print("servekit doctor: --check-oom needs --mme (507 is the multi-model load answer)", file=sys.stderr)
        return 2
    try:
        report = run_doctor(args.image, options_from(args))
    except DoctorError as exc:
        print(f"servekit doctor: {exc}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.table())
    if args.junit:
        Path(args.junit).write_text(report.to_junit())
    return 0 if report.ok else 1
