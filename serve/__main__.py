"""``serve``: start the container's model server (what ``docker run IMAGE serve`` runs)."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from typing import TYPE_CHECKING

from handlers.registry import handler_class
from serve.accelerator import DEV_DIR, no_gpu_line
from serve.settings import Settings, SettingsError, describe_variables

if TYPE_CHECKING:
    import uvicorn


DESCRIPTION = """\
Serve models behind SageMaker's container contract: GET /ping and POST /invocations, and in
multi-model mode the /models API. All configuration comes from environment variables."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serve",
        description=DESCRIPTION,
        epilog="environment variables:\n" + describe_variables(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command", nargs="?", default="serve",
        help="'serve' (what SageMaker passes to the container; the default)",
    )
    return parser


def configure_logging(level: int) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def bound_socket(settings: Settings) -> socket.socket:
    """The port's socket, bound but not yet listening, for the front and (prefork) the workers.

    uvicorn listens on it once its start-up is done (the fork parent's framework import: seconds for
    TensorFlow), as it does on a port it binds itself; until then a connection is refused at once.
    Listening earlier would hold SageMaker's /ping in the backlog, unanswered past its 2 s timeout."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and create_server do
        sock.bind((settings.host, settings.port))
    except OSError:
        sock.close()
        raise
    return sock


def stop_accepting(server: uvicorn.Server | None, settings: Settings) -> None:
    """SERVE_PREFORK: the model is loaded and its workers accept from now on; the front stops."""
    for listening in getattr(server, "servers", []):
        listening.close()
    logging.getLogger("serve").info("prefork: the model's workers answer on port %d themselves from now on",
                                    settings.port)


def run_native(settings: Settings) -> int:
    """Run the native engine's HTTP server until SIGTERM/SIGINT; return the exit code."""
    if settings.mme_pool:
        return run_pool(settings)
    import uvicorn

    from serve.app import create_app
    from serve.engine import Engine, Prefork
    from serve.http import uvicorn_config
    from serve.prefork import worker_main as prefork_worker_main

    state = {"exit_code": 0}
    server: uvicorn.Server | None = None

    def on_fatal(message: str) -> None:
        state["exit_code"] = 1
        if server is not None:
            server.should_exit = True

    listener = None
    if settings.prefork:
        try:
            listener = bound_socket(settings)
        except OSError as exc:
            logging.getLogger("serve").error("cannot bind %s:%d: %s", settings.host, settings.port, exc)
            return 1
    # With SERVE_PREFORK the workers get their own descriptor of the listening socket: uvicorn's
    # closes when the front stops accepting.
    prefork = Prefork(listener.dup(), prefork_worker_main) if listener is not None else None
    engine = Engine(settings, prefork)

    def hand_over() -> None:
        stop_accepting(server, settings)
        engine.hand_over()

    app = create_app(settings, on_fatal=on_fatal, engine=engine,
                     on_ready=hand_over if listener is not None else None)
    server = uvicorn.Server(uvicorn_config(app, settings, host=settings.host, port=settings.port, lifespan="on"))
    # uvicorn re-raises the signal it caught once it has shut down; with a Python handler installed
    # that is a no-op, so a SIGTERM stop exits 0 as SageMaker expects instead of dying by the signal.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run(sockets=[listener] if listener is not None else None)
    if not server.started and state["exit_code"] == 0:
        return 1  # could not bind the port; uvicorn has logged why
    return state["exit_code"]


def run_pool(settings: Settings) -> int:
    """SERVE_MME_POOL: the pool's processes answer on the port; the front runs the registry, the
    lifespan and the signals, and listens on nothing (serve/pool.py)."""
    import uvicorn

    from serve.app import create_app
    from serve.http import uvicorn_config
    from serve.pool import PoolEngine
    from serve.pool_worker import pool_main

    try:
        listener = bound_socket(settings)
    except OSError as exc:
        logging.getLogger("serve").error("cannot bind %s:%d: %s", settings.host, settings.port, exc)
        return 1
    engine = PoolEngine(settings, listener, pool_main)
    app = create_app(settings, engine=engine)
    engine.control_app = app
    server = uvicorn.Server(uvicorn_config(app, settings, lifespan="on"))
    signal.signal(signal.SIGTERM, lambda *_: None)  # as run_native: a SIGTERM stop exits 0
    server.run(sockets=[])
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        print(f"serve: error: unknown command {args.command!r}: this image only serves models "
              "(SageMaker runs it as 'docker run IMAGE serve'); training is not supported", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        # Importing the handler module is cheap (it imports its framework lazily) and catches a
        # wrong SERVE_FRAMEWORK before anything starts.
        handler_class(settings.framework)
    except ValueError as exc:
        print(f"serve: error: SERVE_FRAMEWORK={settings.framework!r}: {exc}", file=sys.stderr)
        return 2
    # Before any fork, and from /dev alone: importing the framework or touching CUDA here would break
    # the forked workers (docs/handlers.md).
    no_gpu = no_gpu_line(settings.accelerator, settings.require_gpu, DEV_DIR)
    if no_gpu is not None and settings.require_gpu:
        print(f"serve: error: {no_gpu}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if no_gpu is not None:
        logging.getLogger("serve").warning("%s", no_gpu)
    logging.getLogger("serve").info(
        "starting %s engine, framework %s, %s mode, on %s:%d", settings.engine, settings.framework,
        "multi-model" if settings.multi_model else "single-model", settings.host, settings.port)
    if settings.engine == "mms":
        from serve.mms.engine import run as run_mms

        return run_mms(settings)
    return run_native(settings)


if __name__ == "__main__":
    sys.exit(main())
