"""Single-model mode per framework and format: wrk at each concurrency, plus, from the same starts,
start-up to /ping 200 and to the first 200 invocation, and SIGTERM to exit with processes left."""

from __future__ import annotations

from bench import artifacts, aws_stack, contenders, wrk
from bench.run import Run
from bench.scenarios import floor


def _load(run: Run, server: contenders.Server, framework: str, fmt: str, meta: dict[str, object]) -> None:
    body, content_type = artifacts.body(framework, fmt), artifacts.CONTENT_TYPES[fmt]
    paths = ["/invocations"]
    wrk.run(server.url, paths, body, content_type, max(run.plan.concurrency), run.plan.warmup_seconds)
    for concurrency in run.plan.concurrency:
        result = wrk.run(server.url, paths, body, content_type, concurrency, run.plan.wrk_seconds, server.tree)
        run.add("single", {**meta, **result.as_dict()})
        if result.errors:
            run.fail(f"single {meta}: {result.errors} failed requests at c{concurrency}")


def _one(run: Run, contender: str, artifact: artifacts.Artifact, fmt: str, round_index: int) -> None:
    framework = artifact.framework
    meta = {"framework": framework, "format": fmt, "contender": contender, "round": round_index}
    launch = contenders.Launch(framework, artifact.path, run.workers(), aws_stack.user_script(framework))
    server = contenders.start(contender, launch, run.workdir, run.plan.start_deadline_s, run.aws_python)
    try:
        body = artifacts.body(framework, fmt)
        contenders.wait_invocation(server, "/invocations", body, artifacts.CONTENT_TYPES[fmt], 120)
        run.add("startup", {**meta, **server.timings})
        exposed = contenders.check_loopback_only(server)
        if exposed:
            run.fail(f"{contender} listens beyond loopback: {exposed}")
        _load(run, server, framework, fmt, meta)
    finally:
        stopped = server.stop(run.plan.stop_grace_s)
        run.add("sigterm", {**meta, "seconds": stopped.seconds, "exit_code": stopped.exit_code,
                            "processes_left": stopped.left, "killed": stopped.killed_root,
                            "left_commands": stopped.left_commands})


def measure(run: Run) -> None:
    for framework in run.plan.frameworks:
        artifact = artifacts.make(framework, run.workdir / "artifacts" / framework / "single")
        for fmt in run.plan.formats:
            try:
                floor.measure(run, framework, artifact, fmt)
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                run.fail(f"floor {framework}/{fmt}: {exc!r}")
            for round_index in range(run.plan.rounds):
                for contender in [c for c in run.order(round_index) if contenders.serves(c, multi_model=False)]:
                    run.say(f"single {framework}/{fmt} round {round_index + 1}: {contender}")
                    try:
                        _one(run, contender, artifact, fmt, round_index)
                    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                        run.fail(f"single {framework}/{fmt} {contender}: {exc}")
