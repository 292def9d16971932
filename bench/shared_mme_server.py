"""python -m bench.shared_mme_server --fd FD --workers N MODEL_DIR ...  (started by bench.mme_split)

A measuring device, not a serving mode: the MME design docs/engines.md names as the only way past
the front → worker hop ("Issue 25's goals in one full run", "MME round robin, ≥ 3×"), reduced to
its request path, to measure what a round-robin request costs when it crosses no process boundary.
Each of ``N`` forked processes loads every model (named ``m0``, ``m1``, ... in argument order) and
answers HTTP on the listening socket it inherits (``FD``, bound by the caller), with the native
engine's own request path: the prefork worker's app (``serve.app.create_worker_app``) in MME mode
and ``serve.prefork.InProcessModel`` per model (the SIGALRM timeout included). Everything that
design would also need (loading and unloading across processes, replacing a dead process with every
model, the memory admission) is left out: it costs nothing per request.

The parent waits for every process to load before any accepts (so connections spread over all of
them), and on SIGTERM or SIGINT stops them and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import traceback
from multiprocessing.sharedctypes import RawValue

from handlers.base import Request, Response
from serve.engine import EngineError
from serve.stream import Streamed

#: How long the parent waits for a process to exit after SIGTERM before it kills it.
STOP_GRACE_S = 10.0


def serve(listener: socket.socket, model_dirs: list[str], ready: int, go: int) -> None:
    """One process: load every model, wait for the parent's go, then answer HTTP until SIGTERM."""
    import uvicorn

    from handlers.model import ServedModel
    from handlers.registry import handler_class
    from serve.app import create_worker_app
    from serve.http import uvicorn_config
    from serve.prefork import InProcessModel, raise_timed_out
    from serve.settings import Settings
    from serve.worker import PreforkServing

    settings = Settings.from_env({**os.environ, "SAGEMAKER_MULTI_MODEL": "true", "SERVE_FRAMEWORK": "sklearn"})
    serving = PreforkServing(listener, settings, 1, RawValue("d", 0.0), RawValue("b", 1))
    server: uvicorn.Server | None = None

    def stop() -> None:
        if server is not None:
            server.should_exit = True

    models = {f"m{i}": InProcessModel(ServedModel.load(handler_class("sklearn")(), path, f"m{i}"), serving, stop)
              for i, path in enumerate(model_dirs)}

    async def invoke(name: str, request: Request) -> Response | Streamed:
        model = models.get(name)
        if model is None:
            raise EngineError(404, f"model {name!r} is not loaded")
        return await model.invoke(name, request)

    config = uvicorn_config(create_worker_app(settings, 1, invoke), settings, lifespan="off")
    server = uvicorn.Server(config)
    os.write(ready, b"r")  # loaded
    os.close(ready)  # the parent sees EOF once every process has written or died
    os.read(go, 1)  # every process has loaded
    signal.signal(signal.SIGALRM, raise_timed_out)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(server.serve(sockets=[listener]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shared_mme_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fd", type=int, required=True, help="a bound TCP socket's file descriptor")
    parser.add_argument("--workers", type=int, required=True, help="processes, each holding every model")
    parser.add_argument("models", nargs="+", help="model directories (scikit-learn)")
    args = parser.parse_args(argv)
    listener = socket.socket(fileno=args.fd)
    listener.listen(2048)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                serve(listener, args.models, ready_w, go_r)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    os.close(ready_w)
    for _ in children:
        if os.read(ready_r, 1) != b"r":  # EOF: every child has exited or closed it
            print("a process exited before its models were loaded", file=sys.stderr)
            return stop(children, 1)
    os.write(go_w, b"g" * len(children))
    listener.close()
    print(f"serving {len(args.models)} models in each of {len(children)} processes", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return stop(children, 0)


def stop(children: list[int], code: int) -> int:
    """SIGTERM every child, wait (killing any still there after ``STOP_GRACE_S``), return ``code``."""
    for pid in children:
        os.kill(pid, signal.SIGTERM)

    def kill_the_rest(signum: int, frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGALRM, kill_the_rest)
    signal.alarm(int(STOP_GRACE_S))
    for pid in children:
        os.waitpid(pid, 0)
    return code


if __name__ == "__main__":
    sys.exit(main())
