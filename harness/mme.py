"""The platform side of a multi-model endpoint: one container's model cache.

docs/sagemaker-contract.md §2.2 (how SageMaker drives the container) and §2.3 (its model API).

On an invocation with TargetModel the harness resolves ``ModelDataUrl`` prefix + TargetModel, gives
the model an opaque name (a hash, as SageMaker does), downloads and safely extracts the artifact to
``<models root>/<name>/model`` unless it is on disk already, asks the container to load it
(``POST /models``; 409 means "already loaded"), and invokes ``POST /models/<name>/invoke``. When the
container answers 507 the least recently used model with no request in flight is unloaded
(``DELETE /models/<name>``; it stays on disk) and the load is retried. Loads of one model are
single-flight; a request waits at most ``model_load_wait_s`` (60 s) and then gets
ModelNotReadyException while the load goes on. ``ModelCacheSetting=Disabled`` unloads the model and
deletes it from disk after each invocation.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness import artifacts
from harness.container_client import ContainerReply
from harness.errors import InternalFailure, ModelNotReadyError, ValidationError

if TYPE_CHECKING:
    from harness.config import HarnessConfig
    from harness.container_client import ContainerClient, ContainerTarget
    from harness.faults import Faults
    from harness.metrics import Metrics


def opaque_name(url: str) -> str:
    """The model_name the container sees: a hash of the artifact's absolute URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


@dataclass
class LoadedModel:
    """A model the container has loaded."""

    last_used: float
    in_flight: int = 0


class ModelCache:
    """Loaded models of one MME container, in least-recently-used order."""

    def __init__(self, container: ContainerTarget, client: ContainerClient, metrics: Metrics,
                 config: HarnessConfig, faults: Faults, *, variant: str, instance_id: str, models_dir: Path,
                 prefix: str, cache_enabled: bool) -> None:
        self.container = container
        self.client = client
        self.metrics = metrics
        self.config = config
        self.faults = faults  # test-only (harness.faults): a vanished artifact, a load answered 507
        self.variant = variant
        self.instance_id = instance_id
        self.models_dir = models_dir
        self.prefix = prefix  # the ModelDataUrl every TargetModel is relative to
        self.cache_enabled = cache_enabled  # False: MultiModelConfig.ModelCacheSetting is Disabled
        self.loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._unloading: set[str] = set()
        # Set while a model is being unloaded, so a new load of the same model waits for it to finish
        # (otherwise the container could see POST /models before the DELETE it has not processed).
        self._unload_done: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[None]] = set()  # referenced until done, so none is collected

    # -- metrics -----------------------------------------------------------------------------------
    def _metric(self, name: str, value: float) -> None:
        self.metrics.record(self.container.endpoint, self.variant, name, value)

    def _count_changed(self) -> None:
        self.metrics.set_loaded_models(self.container.endpoint, self.variant, self.instance_id, len(self.loaded))

    # -- the request path ----------------------------------------------------------------------------
    async def acquire(self, target: str) -> str:
        """Make ``target`` loaded and pin it for one request; returns its opaque name."""
        try:
            url = artifacts.join_prefix(self.prefix, target)
        except artifacts.ArtifactError as exc:
            raise ValidationError(str(exc)) from None
        name = opaque_name(url)
        entry = self.loaded.get(name)
        hit = entry is not None and name not in self._unloading
        self._metric("ModelCacheHit", 1.0 if hit else 0.0)
        if entry is None or not hit:
            entry = await self._wait_loaded(name, target, url)
        entry.in_flight += 1
        entry.last_used = time.monotonic()
        self.loaded.move_to_end(name)
        return name

    async def _wait_loaded(self, name: str, target: str, url: str) -> LoadedModel:
        """Join (or start) the single-flight load of ``name``; give up waiting after model_load_wait_s."""
        started = time.perf_counter()
        task = self._loading.get(name)
        if task is None:
            task = asyncio.create_task(self._load(name, target, url))
            self._loading[name] = task
            task.add_done_callback(self._load_finished)
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.config.model_load_wait_s)
        except TimeoutError:
            raise ModelNotReadyError(
                f"Model {target} is not ready yet: it is still being downloaded or loaded into the "
                "container. Wait and try your request again."
            ) from None
        finally:
            self._metric("ModelLoadingWaitTime", (time.perf_counter() - started) * 1e6)
        entry = self.loaded.get(name)
        if entry is None:
            raise InternalFailure(f"model {target} was unloaded before it could be invoked; retry")
        return entry

    def _load_finished(self, task: asyncio.Task[None]) -> None:
        for name, running in list(self._loading.items()):
            if running is task:
                del self._loading[name]
        if not task.cancelled():
            task.exception()  # retrieved here so a load nobody waits for any more is not reported as lost

    async def release(self, name: str) -> None:
        """Unpin after a request; with caching disabled the model is unloaded and deleted."""
        entry = self.loaded.get(name)
        if entry is None:
            return
        entry.in_flight -= 1
        entry.last_used = time.monotonic()
        if not self.cache_enabled and entry.in_flight == 0:
            # SageMaker unloads asynchronously after the response; do the same.
            task = asyncio.create_task(self.unload(name, delete_files=True))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def forget(self, name: str) -> None:
        """The container says it does not have ``name`` (404): drop it so the next request reloads."""
        entry = self.loaded.pop(name, None)
        if entry is not None:
            self._count_changed()

    # -- load / unload ---------------------------------------------------------------------------------
    async def _download(self, name: str, target: str, url: str) -> Path:
        model_dir = self.models_dir / name / "model"
        if model_dir.is_dir():
            return model_dir  # still on disk from an earlier load: SageMaker keeps unloaded models
        staging = self.models_dir / name / "staging"
        download = self.models_dir / name / "download"
        started = time.perf_counter()
        try:
            budget = artifacts.Budget(self.config.artifact_limits)
            fetched = await asyncio.to_thread(artifacts.fetch, url, download, region=self.config.region,
                                              s3_endpoint_url=self.config.s3_endpoint_url, budget=budget,
                                              faults=self.faults)
            self._metric("ModelDownloadingTime", (time.perf_counter() - started) * 1e6)
            await asyncio.to_thread(shutil.rmtree, staging, True)
            await asyncio.to_thread(artifacts.materialize, fetched, staging, budget)
        except artifacts.ArtifactNotFound:
            await asyncio.to_thread(shutil.rmtree, self.models_dir / name, True)
            raise _download_failed(url) from None
        except artifacts.ArtifactError as exc:
            await asyncio.to_thread(shutil.rmtree, self.models_dir / name, True)
            raise ValidationError(f"Cannot use model artifact for TargetModel {target}: {exc}") from None
        finally:
            await asyncio.to_thread(shutil.rmtree, download, True)
        staging.rename(model_dir)
        return model_dir

    async def _load(self, name: str, target: str, url: str) -> None:
        pending = self._unload_done.get(name)
        if pending is not None:
            await pending.wait()
        model_dir = await self._download(name, target, url)
        started = time.perf_counter()
        while True:
            reply = await self._load_once(name, model_dir, target)
            if reply.status < 300 or reply.status == 409:
                break  # 409: the container has it already
            victim = self._least_recently_used(exclude=name) if reply.status == 507 else None
            if victim is None:
                raise self.client.rejected(self.container, reply.status, reply.text)
            await self.unload(victim, delete_files=False)  # 507: no room; make some and try again
        self._metric("ModelLoadingTime", (time.perf_counter() - started) * 1e6)
        self.loaded[name] = LoadedModel(last_used=time.monotonic())
        self._count_changed()

    async def _load_once(self, name: str, model_dir: Path, target: str) -> ContainerReply:
        """``POST /models``, unless a test armed a 507 for this load (harness.faults)."""
        if self.faults.take_load_rejection():
            return ContainerReply(status=507, body=b"insufficient memory (fault armed by a test)",
                                  content_type="text/plain", custom_attributes=None, latency_us=0.0)
        return await self.client.load(self.container, name, model_dir, target)

    def _least_recently_used(self, exclude: str) -> str | None:
        for name, entry in self.loaded.items():  # OrderedDict: oldest first
            if name != exclude and entry.in_flight == 0 and name not in self._unloading:
                return name
        return None

    async def unload(self, name: str, *, delete_files: bool) -> None:
        """``DELETE /models/<name>``; with ``delete_files`` also remove it from disk."""
        entry = self.loaded.get(name)
        if entry is None or name in self._unloading or entry.in_flight > 0:
            return
        self._unloading.add(name)
        done = self._unload_done[name] = asyncio.Event()
        started = time.perf_counter()
        try:
            await self.client.unload(self.container, name)
            self._metric("ModelUnloadingTime", (time.perf_counter() - started) * 1e6)
            self.loaded.pop(name, None)
            self._count_changed()
            if delete_files:
                await asyncio.to_thread(shutil.rmtree, self.models_dir / name, True)
        finally:
            self._unloading.discard(name)
            done.set()
            if self._unload_done.get(name) is done:
                del self._unload_done[name]



def _download_failed(url: str) -> ValidationError:
    """SageMaker's answer when TargetModel names no object under the prefix."""
    if url.startswith("s3://"):
        bucket, key = artifacts.split_s3(url)
        where = f"(bucket: {bucket}, key: {key})"
    else:
        where = f"(url: {url})"
    return ValidationError(
        f"Failed to download model data{where}. Please ensure that there is an object located at the "
        "URL and that the role passed to CreateModel has permissions to download the object."
    )
