"""``servekit local ...``: run the local SageMaker in the foreground and inspect it from another shell.

    servekit local up [--port P] [--backend docker|process] [--state-dir DIR] [--allow-host H] [--token T]
    servekit local ls | logs ENDPOINT [--container HOST] | logs --transform-job JOB | metrics ENDPOINT | down
    servekit local replay CAPTURE_S3_PREFIX --endpoint NAME [--compare OTHER] [--json]

``up`` records its URL in ``<state dir>/harness.json``; the other subcommands read it (or take
``--url``) and talk to the running harness over HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.doctor.cli import add_parser as add_doctor
from harness.security import ADMIN_HEADER, TOKEN_ENV
from harness.state import default_state_dir, read_state_file, remove_state_file, write_state_file

if TYPE_CHECKING:
    from harness.backends.base import Backend
    from harness.config import HarnessConfig

DEFAULT_PORT = 8181

SNIPPET = """\
Point boto3 at it -- either leave your code unchanged and export

    export AWS_ENDPOINT_URL_SAGEMAKER={url}
    export AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME={url}
    export AWS_ACCESS_KEY_ID={key} AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION={region}

or pass endpoint_url explicitly:

    import boto3
    sm = boto3.client("sagemaker", endpoint_url="{url}", region_name="{region}",
                      aws_access_key_id="{key}", aws_secret_access_key="local")
    runtime = boto3.client("sagemaker-runtime", endpoint_url="{url}", region_name="{region}",
                           aws_access_key_id="{key}", aws_secret_access_key="local")

Images: {images}
Inspect: servekit local ls | logs ENDPOINT | metrics ENDPOINT      Stop: Ctrl-C or servekit local down
"""


class CliError(Exception):
    """A problem to report in one line, without a traceback."""


def _http(method: str, url: str, timeout: float = 10.0, token: str | None = None) -> tuple[int, bytes]:
    headers = {ADMIN_HEADER: "1", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback URL
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"no local harness answers at {url.split('/_servekit')[0]} ({reason}); "
                       "is `servekit local up` running?") from None


def _running_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    record = read_state_file(Path(args.state_dir))
    if record is None:
        raise CliError(f"no local harness recorded in {args.state_dir}; start one with: servekit local up")
    return str(record["url"])


def _token(args: argparse.Namespace) -> str | None:
    """``--token``, else $SERVEKIT_LOCAL_TOKEN, else the one the running harness recorded."""
    if getattr(args, "token", None):
        return str(args.token)
    record = read_state_file(Path(args.state_dir)) or {}
    return record.get("token") or None


def _alive(url: str, token: str | None = None) -> bool:
    """Whether anything answers at ``url`` (a harness with another token answers 403: alive too)."""
    try:
        _http("GET", url + "/_servekit/endpoints", timeout=2, token=token)
    except CliError:
        return False
    return True


def image_framework(text: str) -> tuple[str, str]:
    """Parse NAME=module:Class for --image-framework."""
    name, sep, framework = text.partition("=")
    if not sep or not name or ":" not in framework:
        raise argparse.ArgumentTypeError(f"expected NAME=module:Class, got {text!r}")
    return name, framework


def _choose_backend(args: argparse.Namespace) -> Backend:
    """The backend ``--backend`` names (``auto``: docker when its engine answers), with its options."""
    from harness.backends import make_backend
    from harness.backends.docker import docker_available

    if args.backend == "auto":
        args.backend = "docker" if docker_available() else "process"
    options: dict[str, object] = {}
    if args.image_framework:
        if args.backend != "process":
            raise CliError("--image-framework applies to the process backend only (the docker backend runs "
                           "the image itself)")
        options["frameworks"] = dict(args.image_framework)
    backend = make_backend(args.backend, **options)
    if args.backend == "docker" and not docker_available():
        raise CliError("--backend docker needs a running Docker engine (docker info failed); "
                       "start it, or use --backend process")
    return backend


def _announce(url: str, state_dir: Path, backend: str, config: HarnessConfig) -> None:
    images = ("servekit-sklearn, servekit-pytorch, servekit-tensorflow (any registry prefix and tag)"
              if backend == "process" else "any local Docker image with SageMaker's labels")
    print(f"servekit local SageMaker ({backend} backend) listening on {url}")
    print(f"State and container logs: {state_dir}\n")
    if config.token:
        print("Token required: it is the AWS access key id below; servekit local reads it from the state dir.")
    print(SNIPPET.format(url=url, region=config.region, images=images, key=config.token or "local"), flush=True)


def _sweep_orphans(backend: Backend) -> None:
    """Remove containers an earlier harness left behind when it was killed (docker backend)."""
    from harness.backends.docker import DockerBackend, sweep_orphans

    if isinstance(backend, DockerBackend):
        removed = sweep_orphans()
        if removed:
            print(f"Removed {len(removed)} container(s) left by a harness that was killed: {' '.join(removed)}")


def cmd_up(args: argparse.Namespace) -> int:
    """Serve in the foreground until Ctrl-C / SIGTERM / ``servekit local down``; then stop every container."""
    import uvicorn

    from harness.app import create_app
    from harness.config import HarnessConfig
    from harness.core import Platform
    from harness.local import listen_on_loopback

    state_dir = Path(args.state_dir).resolve()
    record = read_state_file(state_dir)
    if record is not None and _alive(str(record["url"])):
        raise CliError(f"a local harness already runs at {record['url']} (state dir {state_dir}); "
                       "stop it with: servekit local down, or use another --state-dir")
    backend = _choose_backend(args)
    _sweep_orphans(backend)
    config = HarnessConfig(state_dir=state_dir, region=args.region, startup_timeout_s=args.startup_timeout,
                           allowed_hosts=tuple(args.allow_host), token=args.token or None,
                           stream_resplit=args.stream_resplit, **hosting_settings(args),
                           **({} if args.stream_timeout is None else {"stream_timeout_s": args.stream_timeout}))
    try:
        sock = listen_on_loopback(args.port)
    except OSError as exc:
        raise CliError(f"cannot listen on 127.0.0.1:{args.port}: {exc}; choose another --port") from None
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server: uvicorn.Server | None = None

    def request_exit() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(Platform(config, backend), request_exit=request_exit)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, lifespan="on", timeout_graceful_shutdown=5))
    write_state_file(state_dir, url, backend.name, config.token)
    _announce(url, state_dir, backend.name, config)
    # uvicorn handles SIGINT/SIGTERM during run() (its lifespan shutdown stops every container) and
    # re-raises the signal afterwards; with these no-op handlers that re-raise does not kill us before
    # the state file is removed, and a stop by signal exits 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        remove_state_file(state_dir, url)
    print("servekit local SageMaker stopped; all containers stopped.", flush=True)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """Endpoints, their status and containers."""
    url = _running_url(args)
    status, body = _http("GET", url + "/_servekit/endpoints", token=_token(args))
    if status != 200:
        raise CliError(f"the harness at {url} answered {status}")
    data = json.loads(body)
    if not data["endpoints"]:
        print(f"no endpoints ({data['backend']} backend at {url})")
        return 0
    for endpoint in data["endpoints"]:
        print(f"{endpoint['name']}  {endpoint['status']}  config={endpoint['config']}")
        if endpoint.get("failure_reason"):
            print(f"    FailureReason: {endpoint['failure_reason']}")
        for c in endpoint["containers"]:
            print(f"    {c['log_stream']:<40} {c['image']:<30} {c['url']}  {c['process']}")
    return 0


def _print_streams(directory: Path, container: str | None, what: str) -> int:
    files = sorted(directory.glob("*.log")) if directory.is_dir() else []
    if not files:
        raise CliError(f"no logs for {what}")
    for path in files:
        stream = path.stem.replace("__", "/")
        if container and not stream.endswith("/" + container):
            continue
        sys.stdout.write(f"==> {stream} <==\n{path.read_text(errors='replace')}\n")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """An endpoint's container log streams (from the running harness, else from the state dir); with
    --transform-job, a batch transform job's streams (containers and data-log) from the state dir."""
    if args.transform_job:
        from harness.transform import job_log_dir

        return _print_streams(job_log_dir(Path(args.state_dir), args.endpoint), args.container,
                              f"transform job {args.endpoint}")
    query = f"?container={urllib.parse.quote(args.container)}" if args.container else ""
    try:
        url = _running_url(args)
        status, body = _http("GET", f"{url}/_servekit/endpoints/{args.endpoint}/logs{query}", token=_token(args))
    except (CliError, OSError):
        status, body = 0, b""
    if status == 200:
        sys.stdout.write(body.decode(errors="replace"))
        return 0
    return _print_streams(Path(args.state_dir) / "logs" / args.endpoint, args.container, f"endpoint {args.endpoint}")


def _format_metrics(data: dict[str, Any]) -> str:
    lines = []
    for variant, entry in data["variants"].items():
        lines.append(f"{data['endpoint']} / {variant}")
        rows = [("", name, stats) for name, stats in entry["metrics"].items()]
        for host, metrics in entry.get("containers", {}).items():
            rows += [(host, name, stats) for name, stats in metrics.items()]
        lines.append(f"  {'container':<14}{'metric':<24}{'count':>8}{'average':>16}{'sum':>16}{'max':>16}  unit")
        for host, name, s in rows:
            lines.append(f"  {host:<14}{name:<24}{s['SampleCount']:>8}{s['Average']:>16.1f}{s['Sum']:>16.1f}"
                         f"{s['Maximum']:>16.1f}  {s['Unit']}")
        if "LoadedModelCountNow" in entry:
            lines.append(f"  loaded models now: {entry['LoadedModelCountNow']}")
    return "\n".join(lines) if lines else f"no metrics for {data['endpoint']} yet"


def cmd_metrics(args: argparse.Namespace) -> int:
    """An endpoint's metrics under SageMaker's CloudWatch names."""
    url = _running_url(args)
    status, body = _http("GET", f"{url}/_servekit/endpoints/{args.endpoint}/metrics", token=_token(args))
    if status != 200:
        raise CliError(f"the harness at {url} answered {status}")
    data = json.loads(body)
    print(json.dumps(data, indent=2) if args.json else _format_metrics(data))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Ask the running harness to stop its containers and exit; wait until it has."""
    url = _running_url(args)
    token = _token(args)
    status, body = _http("POST", url + "/_servekit/shutdown", token=token)
    if status != 200:
        raise CliError(f"the harness at {url} refused to stop ({status}): {body.decode(errors='replace').strip()}")
    deadline = time.monotonic() + args.timeout
    while _alive(url, token):
        if time.monotonic() > deadline:
            raise CliError(f"the harness at {url} did not stop within {args.timeout:.0f} s")
        time.sleep(0.2)
    # The harness removes its record once stopped; wait briefly for that too.
    while read_state_file(Path(args.state_dir)) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    print(f"stopped the local harness at {url}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Send captured requests again (harness.replay); exit 1 when answers differ."""
    import boto3
    from botocore.config import Config

    from harness import replay
    from harness.artifacts import s3_client

    url = _running_url(args)
    # No retries: a replayed request that fails counts as an error once, and its latency is one attempt's.
    runtime = boto3.client("sagemaker-runtime", endpoint_url=url, region_name=args.region,
                           aws_access_key_id=_token(args) or "local", aws_secret_access_key="local",
                           config=Config(retries={"total_max_attempts": 1}))
    try:
        records = replay.read_captures(s3_client(None, args.region), args.capture)
    except replay.ReplayError as exc:
        raise CliError(str(exc)) from None

    def progress(done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            print(f"replayed {done}/{total}", file=sys.stderr, flush=True)

    report = replay.replay(runtime, records, args.endpoint, args.compare, progress)
    print(json.dumps(report, indent=2) if args.json else replay.format_report(report))
    return 1 if report["differences"] else 0


def add_replay(sub: Any, common: Any) -> None:
    """``replay``'s arguments (docs/harness.md "Replaying captured requests")."""
    p = sub.add_parser("replay", help="send captured requests (SageMaker data capture) to endpoints and "
                                      "report answers that differ, errors and latency; exit 1 on differences")
    common(p)
    p.add_argument("--url", help="the harness URL (default: from the state dir)")
    p.add_argument("capture", metavar="CAPTURE_S3_PREFIX",
                   help="s3:// prefix of the capture's .jsonl objects (S3 found as boto3 finds it: "
                        "AWS_ENDPOINT_URL_S3 for a local one)")
    p.add_argument("--endpoint", required=True, help="the endpoint to send them to")
    p.add_argument("--compare", metavar="OTHER",
                   help="also send them to OTHER and compare its answers (default: compare with the captured "
                        "endpointOutput)")
    p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(func=cmd_replay)


#: ``up`` options for the harness's own choices on hosting surfaces SageMaker leaves open (docs/harness.md "Open
#: questions, made configurable"): option -> (HarnessConfig field, type, help).
HOSTING_OPTIONS: dict[str, tuple[str, type, str]] = {
    "--shadow-max-in-flight": ("shadow_max_in_flight", int, "copies one shadow variant may have running at once"),
    "--capture-flush-interval": ("capture_flush_interval_s", float,
                                 "seconds captured records wait before their S3 object is written"),
    "--serverless-idle": ("serverless_idle_s", float,
                          "seconds without a request before a serverless variant goes cold"),
}


def add_hosting_options(up: argparse.ArgumentParser) -> None:
    """``up``'s streaming, shadow-variant, data-capture and serverless settings; unset keeps HarnessConfig's
    default."""
    add_stream_options(up)
    for option, (_, kind, text) in HOSTING_OPTIONS.items():
        up.add_argument(option, type=kind, help=f"{text} (default: HarnessConfig's)")
    up.add_argument("--shadow-copy-all", action="store_true",
                    help="send every request to shadow variants, whatever their weights "
                         "(shadow_share_from_weights off)")


def hosting_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The HarnessConfig fields ``up``'s hosting options set."""
    settings: dict[str, Any] = {field: getattr(args, option[2:].replace("-", "_"))
                                for option, (field, _, _) in HOSTING_OPTIONS.items()}
    settings = {field: value for field, value in settings.items() if value is not None}
    if args.shadow_copy_all:
        settings["shadow_share_from_weights"] = False
    return settings


def add_stream_options(up: argparse.ArgumentParser) -> None:
    """``up``'s InvokeEndpointWithResponseStream settings (docs/harness.md "Streaming")."""
    up.add_argument("--stream-resplit", action="store_true",
                    help="InvokeEndpointWithResponseStream: re-cut the container's bytes at random places "
                         "into PayloadParts, as SageMaker may, to test a client's parser")
    up.add_argument("--stream-timeout", type=float,
                    help="seconds a response stream may last (default: HarnessConfig.stream_timeout_s)")


def build_parser() -> argparse.ArgumentParser:
    """The ``servekit`` argument parser."""
    parser = argparse.ArgumentParser(prog="servekit", description="servekit tools")
    top = parser.add_subparsers(dest="group", required=True)
    local = top.add_parser("local", help="a local SageMaker (control plane + runtime) for boto3")
    sub = local.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", default=str(default_state_dir()),
                       help="where the harness keeps its record, logs and artifacts (default: %(default)s)")
        p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                       help=f"the harness's token (default: ${TOKEN_ENV}; other subcommands: the state dir's)")

    up = sub.add_parser("up", help="serve in the foreground until Ctrl-C")
    common(up)
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1 (default: %(default)s)")
    up.add_argument("--backend", choices=["auto", "process", "docker"], default="auto",
                    help="run containers with Docker or as local processes (default: docker when its "
                         "engine answers, else process)")
    up.add_argument("--region", default="us-east-1")
    up.add_argument("--image-framework", action="append", type=image_framework, default=[], metavar="NAME=MODULE:CLASS",
                    help="process backend: run images named NAME with this custom handler (repeatable), e.g. "
                         "servekit-onnx=onnx_handler:OnnxHandler; the module must be importable here")
    up.add_argument("--startup-timeout", type=float, default=240.0,
                    help="seconds a container may take to pass /ping (default: %(default)s, as SageMaker)")
    up.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                    help="also accept requests whose Host header names HOST (repeatable); loopback names "
                         "always pass")
    add_hosting_options(up)
    up.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    up.set_defaults(func=cmd_up)

    for name, func, text in (("ls", cmd_ls, "list endpoints and their containers"),
                             ("down", cmd_down, "stop the running harness and its containers")):
        p = sub.add_parser(name, help=text)
        common(p)
        p.add_argument("--url", help="the harness URL (default: from the state dir)")
        if name == "down":
            p.add_argument("--timeout", type=float, default=120.0)
        p.set_defaults(func=func)

    logs = sub.add_parser("logs", help="an endpoint's container logs")
    common(logs)
    logs.add_argument("--url")
    logs.add_argument("endpoint")
    logs.add_argument("--container", help="only this container (hostname, or 'primary')")
    logs.add_argument("--transform-job", action="store_true",
                      help="the name is a batch transform job's: its container streams and <job>/data-log")
    logs.set_defaults(func=cmd_logs)

    metrics = sub.add_parser("metrics", help="an endpoint's metrics (SageMaker CloudWatch names)")
    common(metrics)
    metrics.add_argument("--url")
    metrics.add_argument("endpoint")
    metrics.add_argument("--json", action="store_true", help="raw JSON")
    metrics.set_defaults(func=cmd_metrics)
    add_replay(sub, common)
    add_doctor(top)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``servekit`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"servekit: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
