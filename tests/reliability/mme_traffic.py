"""Multi-model traffic for the soak and interleaving tests: models that name themselves in every answer,
and a seeded random driver that mixes invoke, load, unload, describe and list at a fixed concurrency,
emulating SageMaker's MME router (a 404 from invoke loads the model; a 507 from a load unloads the
least recently used model and retries), and checks every answer as it comes.

What each operation may answer, and why (anything else is an unexpected error and fails the test):

* ``POST /models/{m}/invoke`` -- 200 whose body is exactly model m's constant (any other value is a
  response routed to the wrong model); 404 when m is not loaded, still loading or being unloaded
  (other clients load and unload the same models concurrently).
* ``POST /models`` -- 200; 409 when m is loaded or being loaded by another client (single flight);
  507 when the memory limit is reached (the test's point: eviction churn).
* ``DELETE /models/{m}`` -- 200; 404 when m is not loaded, still loading or already being unloaded.
* ``GET /models/{m}`` -- 200 (naming m) or 404, as for DELETE.
* ``GET /models`` -- 200, every listed model one of ours, at its own URL.

Every request has a timeout; a timeout, a refused or reset connection, or a request never answered
counts as an unexpected error (a lost request or a deadlock).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

#: Per-request timeout: far above any answer a healthy server gives here, so hitting it means a request
#: was lost or the server deadlocked.
REQUEST_TIMEOUT_S = 60.0
ROW = [[1.0, 2.0, 3.0, 4.0]]

EXPECTED: dict[str, set[int]] = {
    "invoke": {200, 404},
    "load": {200, 409, 507},
    "unload": {200, 404},
    "describe": {200, 404},
    "list": {200},
}


def constant_models(root: Path, count: int) -> dict[str, Path]:
    """``count`` scikit-learn models ``m00``, ``m01``...; model i predicts the constant i for any row."""
    import joblib
    import numpy as np
    from sklearn.dummy import DummyRegressor

    models = {}
    for index in range(count):
        directory = root / f"m{index:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        model = DummyRegressor(strategy="constant", constant=float(index)).fit(np.zeros((1, 4)), [0.0])
        joblib.dump(model, directory / "model.joblib")
        models[f"m{index:02d}"] = directory
    return models


def constant_of(name: str) -> float:
    return float(int(name[1:]))


@dataclass
class Stats:
    """What the driver saw: (operation, status) counts, unexpected answers, misroutes, latencies."""

    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    misrouted: list[str] = field(default_factory=list)
    sent: int = 0
    answered: int = 0
    evictions: int = 0
    invoke_ms: list[float] = field(default_factory=list)

    def record(self, op: str, status: int, detail: str) -> None:
        self.counts[(op, status)] += 1
        if status not in EXPECTED[op]:
            self.unexpected.append(f"{op} -> {status}: {detail[:300]}")

    def by_status(self) -> dict[int, int]:
        totals: Counter[int] = Counter()
        for (_, status), n in self.counts.items():
            totals[status] += n
        return dict(sorted(totals.items()))

    def summary(self) -> str:
        by_op: dict[str, dict[int, int]] = {}
        for (op, status), n in sorted(self.counts.items()):
            by_op.setdefault(op, {})[status] = n
        return "; ".join(f"{op} {dict(statuses)}" for op, statuses in by_op.items())


class Driver:
    """``concurrency`` clients sending a seeded random mix to one MME server until ``duration_s`` ends."""

    def __init__(self, url: str, models: dict[str, Path], *, seed: int, concurrency: int,
                 mix: dict[str, float], stats: Stats | None = None, skew: float = 0.0) -> None:
        self.url = url
        self.models = models
        self.names = sorted(models)
        # Popularity: model i is picked with weight 1 / (i + 1) ** skew (0: uniform; 1: Zipf, a few
        # hot models and a long tail, as an MME's traffic usually is).
        self.popularity = [1.0 / (index + 1) ** skew for index in range(len(self.names))]
        self.rng = random.Random(seed)
        self.concurrency = concurrency
        self.ops, self.weights = zip(*mix.items(), strict=True)
        self.stats = stats or Stats()
        self.last_used: dict[str, float] = {}

    async def _request(self, client: httpx.AsyncClient, op: str, method: str, path: str,
                       body: object = None) -> httpx.Response | None:
        self.stats.sent += 1
        try:
            answer = await client.request(method, self.url + path, json=body, timeout=REQUEST_TIMEOUT_S)
        except httpx.HTTPError as exc:
            self.stats.unexpected.append(f"{op} {path}: no answer ({type(exc).__name__}: {exc})")
            return None
        self.stats.answered += 1
        self.stats.record(op, answer.status_code, answer.text)
        return answer

    async def invoke(self, client: httpx.AsyncClient, name: str) -> int:
        started = time.perf_counter()
        answer = await self._request(client, "invoke", "POST", f"/models/{name}/invoke", ROW)
        if answer is None:
            return 0
        if answer.status_code == 200:
            self.stats.invoke_ms.append((time.perf_counter() - started) * 1000)
            self.last_used[name] = time.monotonic()
            try:
                value = json.loads(answer.content)
            except ValueError:
                value = answer.text
            if value != [constant_of(name)]:
                self.stats.misrouted.append(f"{name} answered {value!r}")
        return answer.status_code

    async def load(self, client: httpx.AsyncClient, name: str) -> int:
        answer = await self._request(client, "load", "POST", "/models",
                                     {"model_name": name, "url": str(self.models[name])})
        return 0 if answer is None else answer.status_code

    async def unload(self, client: httpx.AsyncClient, name: str) -> int:
        answer = await self._request(client, "unload", "DELETE", f"/models/{name}")
        return 0 if answer is None else answer.status_code

    async def describe(self, client: httpx.AsyncClient, name: str) -> None:
        answer = await self._request(client, "describe", "GET", f"/models/{name}")
        if answer is not None and answer.status_code == 200 and name not in answer.text:
            self.stats.misrouted.append(f"GET /models/{name} described {answer.text[:200]!r}")

    async def listed(self, client: httpx.AsyncClient) -> list[str]:
        answer = await self._request(client, "list", "GET", "/models")
        if answer is None or answer.status_code != 200:
            return []
        names = []
        for model in answer.json()["models"]:
            name = model["modelName"]
            names.append(name)
            if name not in self.models or model["modelUrl"] != str(self.models[name]):
                self.stats.misrouted.append(f"GET /models listed {model!r}")
        return names

    async def evict(self, client: httpx.AsyncClient) -> None:
        """SageMaker's answer to a 507: unload the least recently used loaded model."""
        loaded = await self.listed(client)
        if loaded:
            victim = min(loaded, key=lambda n: self.last_used.get(n, 0.0))
            if await self.unload(client, victim) == 200:
                self.stats.evictions += 1

    async def invoke_as_sagemaker(self, client: httpx.AsyncClient, name: str) -> None:
        """Invoke; on 404 load (evicting on 507, up to 3 tries) and invoke again."""
        if await self.invoke(client, name) != 404:
            return
        for _ in range(3):
            status = await self.load(client, name)
            if status != 507:
                break
            await self.evict(client)
        await self.invoke(client, name)

    async def one(self, client: httpx.AsyncClient) -> None:
        op = self.rng.choices(self.ops, self.weights)[0]
        name = self.rng.choices(self.names, self.popularity)[0]
        if op == "invoke":
            await self.invoke_as_sagemaker(client, name)
        elif op == "load":
            if await self.load(client, name) == 507:
                await self.evict(client)
        elif op == "unload":
            await self.unload(client, name)
        elif op == "describe":
            await self.describe(client, name)
        else:
            await self.listed(client)

    async def run(self, duration_s: float, until: Callable[[Stats], bool] | None = None,
                  max_s: float | None = None) -> Stats:
        """Send traffic for ``duration_s``; with ``until``, go on (up to ``max_s``) until it holds."""
        started = time.monotonic()
        # Idle connections are dropped after 2 s, before uvicorn closes them (its keep-alive timeout is
        # 5 s): otherwise a request sent on a connection the server is closing at that instant fails
        # without reaching it (HTTP/1.1's keep-alive race; a load balancer's idle timeout is set below
        # its backends' for the same reason).
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency,
                              keepalive_expiry=2.0)
        async with httpx.AsyncClient(limits=limits) as client:

            def going() -> bool:
                elapsed = time.monotonic() - started
                if elapsed < duration_s:
                    return True
                return until is not None and elapsed < (max_s or duration_s) and not until(self.stats)

            async def loop() -> None:
                while going():
                    await self.one(client)

            await asyncio.gather(*(loop() for _ in range(self.concurrency)))
        return self.stats


def drive(url: str, models: dict[str, Path], duration_s: float, *, seed: int, concurrency: int,
          mix: dict[str, float], stats: Stats | None = None, skew: float = 0.0,
          until: Callable[[Stats], bool] | None = None, max_s: float | None = None) -> Stats:
    """Run a ``Driver`` for ``duration_s`` seconds, then while ``until`` is false up to ``max_s`` (blocking)."""
    driver = Driver(url, models, seed=seed, concurrency=concurrency, mix=mix, stats=stats, skew=skew)
    return asyncio.run(driver.run(duration_s, until, max_s))


def unload_all(url: str) -> None:
    """Unload every loaded model (each DELETE answers once its workers are gone)."""
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        for model in client.get(url + "/models").json()["models"]:
            answer = client.delete(f"{url}/models/{model['modelName']}")
            assert answer.status_code in (200, 404), answer.text
        assert client.get(url + "/models").json()["models"] == []


def load_set(url: str, models: dict[str, Path], names: list[str]) -> None:
    """Load ``names`` (nothing else loaded) and check each answers its own constant."""
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        for name in names:
            answer = client.post(url + "/models", json={"model_name": name, "url": str(models[name])})
            assert answer.status_code == 200, answer.text
            answer = client.post(f"{url}/models/{name}/invoke", json=ROW)
            assert answer.status_code == 200 and answer.json() == [constant_of(name)], answer.text


class TreeSampler:
    """Samples a process tree's memory every ``interval_s`` in a thread: the peak PSS of the whole
    tree, the peak RSS of the root (the front process) and of any single process below it (a model
    worker or the fork parent)."""

    def __init__(self, pid: int, interval_s: float = 1.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_tree_pss = 0
        self.peak_child_rss = 0
        self.peak_root_rss = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for proc in procs:
                try:
                    info = proc.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total += getattr(info, "pss", info.uss)
                if proc.pid == self.pid:
                    self.peak_root_rss = max(self.peak_root_rss, info.rss)
                else:
                    self.peak_child_rss = max(self.peak_child_rss, info.rss)
            self.peak_tree_pss = max(self.peak_tree_pss, total)
            self.samples += 1
            self._stop.wait(self.interval_s)


def uss_breakdown(pid: int) -> dict[str, int]:
    """USS of the front process (the root), its direct children (the fork parent, multiprocessing's
    resource tracker) and the model workers (their children) together."""
    root = psutil.Process(pid)
    parts = {"front": 0, "fork parent": 0, "workers": 0}
    for proc in [root, *root.children(recursive=True)]:
        try:
            uss = proc.memory_full_info().uss
            key = "front" if proc.pid == pid else "fork parent" if proc.ppid() == pid else "workers"
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        parts[key] += uss
    return parts


def tree_uss(pid: int) -> int:
    """Sum of USS over a process tree: its private memory, which no other process on the machine
    changes (PSS does: shared libraries' pages are divided among every process mapping them)."""
    total = 0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_full_info().uss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total
