"""Multi-model endpoints under concurrent, randomly interleaved traffic against the real server
(``python -m serve``, native engine), the way SageMaker's router drives it (``mme_traffic`` defines
every operation and which answers are expected, and why).

* Interleavings: 16 clients load, invoke, unload, describe and list the same 4 models at random
  (seeded): no answer from the wrong model, no lost request, no deadlock, and afterwards the server's
  model list, its workers and its answers agree.
* Soak: 24 models, a memory limit that fits about 8, 16 clients of mixed traffic (invoke with
  SageMaker's load-on-404 and unload-LRU-on-507, plus loads, unloads, describes, lists), so models are
  evicted and reloaded all the time: zero unexpected errors, and the server tree's private memory
  (USS; PSS moves with what other processes on the machine map) with the same 6 models loaded grows
  by under 5% from after the warm-up to the end.

Lengths: 1 minute of soak and 10 s of interleavings by default (CI); ``SERVEKIT_RELIABILITY_LONG=1``:
10 minutes and 2 minutes. The figures are printed in the terminal summary.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import LONG, report
from tests.reliability.mme_traffic import (
    ROW,
    Stats,
    TreeSampler,
    constant_models,
    constant_of,
    drive,
    load_set,
    tree_uss,
    unload_all,
    uss_breakdown,
)
from tests.support.server import RunningServer, run_server

MIB = 2**20
SOAK_S = 600.0 if LONG else 60.0
WARM_UP_S = 30.0 if LONG else 5.0
INTERLEAVE_S = 120.0 if LONG else 10.0
CONCURRENCY = 16
SOAK_MODELS = 24
#: About 8 of the tiny models fit: the first costs ~120 MB (the fork parent's scikit-learn pages it
#: shares), each further one ~9 MB, measured on top of ~60 MB for the front process.
SOAK_MEMORY_LIMIT_MB = 280  # loads may fill 90% (serve.engine.ADMISSION_HEADROOM): about 250 MB
#: The models loaded when memory is measured after the warm-up and at the end.
MEASURED = [f"m{i:02d}" for i in range(6)]
MAX_GROWTH = 0.05

MME = {"SERVE_ENGINE": "native", "SERVE_FRAMEWORK": "sklearn", "SAGEMAKER_MULTI_MODEL": "true"}


def settled_memory(server: RunningServer) -> tuple[int, int]:
    """(USS, PSS) of the server tree, each the smallest of three readings 0.2 s apart (a reading taken
    while a GC or an exiting worker's teardown runs is higher, never lower)."""
    uss, pss = [], []
    for _ in range(3):
        uss.append(tree_uss(server.process.pid))
        pss.append(server.pss_bytes())
        time.sleep(0.2)  # spacing between readings, not synchronisation
    return min(uss), min(pss)


def wait_for_workers(server: RunningServer, loaded: int) -> None:
    """One worker per loaded model, and the spare the engine forks ahead of the next load
    (serve/engine.py, _keep_spare), which it may still be forking after the last load: polled. Memory
    is read only then, so that the spare's few MiB are in every reading or in none."""
    deadline = time.monotonic() + 30
    while (workers := len(server.forked_workers())) != loaded + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers == loaded + 1, (loaded, server.log()[-3000:])


def check_consistent(server: RunningServer, models: dict[str, Path]) -> list[str]:
    """After the traffic: the listed models, the worker processes and the answers agree."""
    listed = [m["modelName"] for m in httpx.get(server.url + "/models", timeout=30).json()["models"]]
    wait_for_workers(server, len(listed))
    for name in models:
        answer = httpx.post(f"{server.url}/models/{name}/invoke", json=ROW, timeout=30)
        if name in listed:
            assert answer.status_code == 200 and answer.json() == [constant_of(name)], (name, answer.text)
        else:
            assert answer.status_code == 404, (name, answer.text)
    return listed


def assert_clean(stats: Stats) -> None:
    assert not stats.misrouted, stats.misrouted[:10]
    assert not stats.unexpected, (len(stats.unexpected), stats.unexpected[:10])
    assert stats.sent == stats.answered, (stats.sent, stats.answered)


#: Outcomes the interleavings must have produced (each at least 5 times) before they may stop: loads
#: lost to a concurrent load of the same model, invokes and unloads of models in between states, and
#: successful invokes, loads and unloads.
RACES = (("invoke", 200), ("invoke", 404), ("load", 200), ("load", 409), ("unload", 200), ("unload", 404))


def every_race_seen(stats: Stats) -> bool:
    return all(stats.counts[key] >= 5 for key in RACES)


@pytest.mark.timeout(INTERLEAVE_S + 300)
def test_random_interleavings_of_load_invoke_unload_on_the_same_models(tmp_path: Path) -> None:
    models = constant_models(tmp_path / "models", 4)
    mix = {"invoke": 0.4, "load": 0.2, "unload": 0.2, "describe": 0.1, "list": 0.1}
    with run_server(MME) as server:
        started = time.monotonic()
        stats = drive(server.url, models, INTERLEAVE_S, seed=13, concurrency=CONCURRENCY, mix=mix,
                      until=every_race_seen, max_s=INTERLEAVE_S + 60)
        elapsed = time.monotonic() - started
        listed = check_consistent(server, models)
        log = server.log()
    report("MME interleavings (native engine)",
           f"{elapsed:.0f} s, {CONCURRENCY} clients, 4 models, seed 13: {stats.sent} requests, "
           f"{stats.answered} answered, {len(stats.unexpected)} unexpected, {len(stats.misrouted)} misrouted; "
           f"by operation and status: {stats.summary()}; loaded at the end: {listed}")
    for line in stats.unexpected[:10]:
        report("MME interleavings (native engine)", f"UNEXPECTED: {line}")
    assert_clean(stats)
    assert every_race_seen(stats), stats.summary()
    assert "Traceback" not in log, log[-4000:]


@pytest.mark.timeout(SOAK_S + WARM_UP_S + 300)
def test_soak_mixed_traffic_with_eviction_churn(tmp_path: Path) -> None:
    models = constant_models(tmp_path / "models", SOAK_MODELS)
    mix = {"invoke": 0.8, "load": 0.05, "unload": 0.05, "describe": 0.05, "list": 0.05}
    env = {**MME, "SERVE_MEMORY_LIMIT_MB": str(SOAK_MEMORY_LIMIT_MB)}
    with run_server(env) as server:
        warm = drive(server.url, models, WARM_UP_S, seed=1, concurrency=CONCURRENCY, mix=mix, skew=1.0)
        assert_clean(warm)
        unload_all(server.url)
        load_set(server.url, models, MEASURED)
        wait_for_workers(server, len(MEASURED))
        before, before_pss = settled_memory(server)
        parts_before = uss_breakdown(server.process.pid)
        with TreeSampler(server.process.pid) as sampler:
            started = time.monotonic()
            stats = drive(server.url, models, SOAK_S, seed=2, concurrency=CONCURRENCY, mix=mix, skew=1.0)
            elapsed = time.monotonic() - started
        listed = check_consistent(server, models)
        unload_all(server.url)
        load_set(server.url, models, MEASURED)
        wait_for_workers(server, len(MEASURED))
        after, after_pss = settled_memory(server)
        parts_after = uss_breakdown(server.process.pid)
        log = server.log()
    growth = (after - before) / before
    loads = stats.counts[("load", 200)]
    section = "MME soak (native engine)"
    report(section, f"{elapsed:.0f} s after an {WARM_UP_S:.0f} s warm-up, {CONCURRENCY} clients, {SOAK_MODELS} "
                    f"models, SERVE_MEMORY_LIMIT_MB={SOAK_MEMORY_LIMIT_MB}")
    report(section, f"{stats.sent} requests ({stats.sent / elapsed:.0f}/s), {stats.answered} answered, "
                    f"{len(stats.unexpected)} unexpected errors, {len(stats.misrouted)} misrouted")
    report(section, f"answers by status: {stats.by_status()}")
    for line in stats.unexpected[:10]:
        report(section, f"UNEXPECTED: {line}")
    report(section, f"by operation: {stats.summary()}")
    report(section, f"churn: {loads} loads, {stats.counts[('load', 507)]} refused with 507, "
                    f"{stats.evictions} LRU evictions, {stats.counts[('unload', 200)]} unloads in all; "
                    f"{len(listed)} models loaded at the end")
    ms = sorted(stats.invoke_ms)
    report(section, f"invoke 200 latency: p50 {ms[len(ms) // 2]:.1f} ms, p99 {ms[int(len(ms) * 0.99)]:.1f} ms")
    report(section, f"memory with the same {len(MEASURED)} models loaded, after warm-up -> at the end: tree USS "
                    f"{before / MIB:.1f} -> {after / MIB:.1f} MiB ({growth * 100:+.2f}%), tree PSS "
                    f"{before_pss / MIB:.1f} -> {after_pss / MIB:.1f} MiB; USS by process: "
                    + ", ".join(f"{key} {parts_before[key] / MIB:.1f} -> {parts_after[key] / MIB:.1f}"
                                for key in parts_before))
    report(section, f"peaks ({sampler.samples} samples, 1 s apart): tree PSS {sampler.peak_tree_pss / MIB:.0f} MiB, "
                    f"front process RSS {sampler.peak_root_rss / MIB:.0f} MiB, largest worker or fork parent RSS "
                    f"{sampler.peak_child_rss / MIB:.0f} MiB")
    assert_clean(stats)
    assert loads > len(MEASURED) and stats.counts[("load", 507)] > 0 and stats.evictions > 0, stats.summary()
    assert growth < MAX_GROWTH, f"private memory grew {growth * 100:.1f}% ({before / MIB:.1f} -> {after / MIB:.1f} MiB)"
    assert "Traceback" not in log, log[-4000:]
