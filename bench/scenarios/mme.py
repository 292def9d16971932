"""Multi-model mode per framework: load time, first-invoke time and tree PSS as models are added
(at each of the plan's levels), then wrk round robin over the first N models."""

from __future__ import annotations

import json
import time
from typing import Any

from bench import artifacts, aws_stack, contenders, procs, wrk
from bench.run import Run


def _load_all(run: Run, server: contenders.Server, models: list[artifacts.Artifact], fmt_body: bytes) -> dict[str, Any]:
    loads, firsts, pss = [], [], {0: procs.pss_bytes(procs.settled_tree(server.tree))}
    stopped_early = None
    for i, model in enumerate(models):
        if run.available_mb() < run.plan.min_available_mb:
            stopped_early = f"stopped at {i} models: {run.available_mb():.0f} MB available"
            break
        request = json.dumps({"model_name": f"m{i}", "url": str(model.path)}).encode()
        started = time.perf_counter()
        status, answer, _ = contenders.post(server.port, "/models", request, "application/json", timeout=300)
        loads.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"POST /models m{i}: {status} {answer[:300]!r}")
        started = time.perf_counter()
        status, answer, _ = contenders.post(server.port, f"/models/m{i}/invoke", fmt_body, "text/csv", timeout=300)
        firsts.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"first invoke of m{i}: {status} {answer[:300]!r}")
        if i + 1 in run.plan.mme_levels:
            pss[i + 1] = procs.pss_bytes(procs.settled_tree(server.tree))
    return {"load_ms": loads, "first_invoke_ms": firsts, "pss_bytes": pss, "stopped_early": stopped_early}


def _one(run: Run, contender: str, framework: str, models: list[artifacts.Artifact], round_index: int) -> None:
    meta = {"framework": framework, "contender": contender, "round": round_index}
    launch = contenders.Launch(framework, None, contenders.mme_workers(contender, run.workers()),
                               aws_stack.user_script(framework))
    server = contenders.start(contender, launch, run.workdir, run.plan.start_deadline_s, run.aws_python)
    try:
        body = artifacts.body(framework, "csv")
        loaded = _load_all(run, server, models, body)
        if loaded["stopped_early"]:
            run.say(f"mme {framework} {contender}: {loaded['stopped_early']}")
        count = min(run.plan.round_robin_models, len(loaded["load_ms"]))
        paths = [f"/models/m{i}/invoke" for i in range(count)]
        wrk.run(server.url, paths, body, "text/csv", max(run.plan.concurrency), run.plan.warmup_seconds)
        robin = []
        for concurrency in run.plan.concurrency:
            result = wrk.run(server.url, paths, body, "text/csv", concurrency, run.plan.wrk_seconds, server.tree)
            robin.append(result.as_dict())
            if result.errors:
                run.fail(f"mme round robin {meta}: {result.errors} failed requests at c{concurrency}")
        run.add("mme", {**meta, **loaded, "round_robin_models": count, "round_robin": robin})
    finally:
        server.stop(run.plan.stop_grace_s)


def measure(run: Run) -> None:
    for framework in run.plan.frameworks:
        models = artifacts.make_many(framework, run.workdir / "artifacts" / framework / "mme", run.plan.mme_models)
        for round_index in range(run.plan.mme_rounds):
            for contender in [c for c in run.order(round_index) if contenders.serves(c, multi_model=True)]:
                run.say(f"mme {framework} round {round_index + 1}: {contender}, {len(models)} models")
                try:
                    _one(run, contender, framework, models, round_index)
                except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                    run.fail(f"mme {framework} {contender}: {exc}")
