"""Starting, health-checking and stopping what runs for an endpoint (the records: harness.running).

SageMaker extracts single-model artifacts before the containers start (docs/sagemaker-contract.md
§1.2), pings each container on its own port until it answers 200 within the startup window (§1.3;
MME containers must also answer ``GET /models``, §2.3), and reports the containers that did not pass
in ``FailureReason``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import psutil

from harness import artifacts
from harness.backends.base import ContainerSpec, free_port
from harness.cloudwatch_logs import stream_file
from harness.core import Platform
from harness.data_capture import DataCapture
from harness.instance_types import InstanceLimits, limits_for
from harness.mme import ModelCache
from harness.running import (
    ComponentHost,
    ContainerRuntime,
    Deployment,
    Instance,
    ServerlessState,
    VariantDeployment,
    routing_strategy,
)
from harness.state import ContainerDef, ModelRecord

log = logging.getLogger("harness")
#: ModelDataDownloadTimeoutInSeconds when not given (docs/harness.md "Unsupported operations", last line).
DEFAULT_DOWNLOAD_TIMEOUT_S = 3600.0


class DeploymentFailed(Exception):
    """Endpoint creation failed; the message is the endpoint's FailureReason."""


def _download_failure(hostname: str, url: str) -> str:
    return (
        f'Failed to download model data for container "{hostname}" from URL: "{url}". Please ensure that '
        "there is an object located at the URL and that the role passed to CreateModel has permissions "
        "to download the object."
    )


def _prepare_single_model(platform: Platform, definition: ContainerDef, target: Path, seconds: float) -> None:
    """Fetch and extract a single-model artifact into ``target`` within the artifact limits and
    ``seconds`` (runs in a thread)."""
    budget = artifacts.Budget(platform.config.artifact_limits, seconds)
    target.mkdir(parents=True, exist_ok=True)
    url = definition.model_data_url
    source = definition.model_data_source
    if url is None and source is not None:
        s3 = source.get("S3DataSource") or {}
        url = s3.get("S3Uri")
        if url and s3.get("CompressionType") == "None":
            fetched = artifacts.fetch(url, target.parent / f"download-{target.name}",
                                      region=platform.config.region,
                                      s3_endpoint_url=platform.config.s3_endpoint_url, budget=budget,
                                      faults=platform.faults)
            # S3Object: the file keeps its name under /opt/ml/model; a local directory is copied.
            if fetched.is_dir():
                shutil.copytree(fetched, target, dirs_exist_ok=True)
            else:
                shutil.copy2(fetched, target / fetched.name)
            return
    if not url:
        return  # bring-your-own containers need no artifact
    download_dir = target.parent / f"download-{target.name}"
    fetched = artifacts.fetch(url, download_dir, region=platform.config.region,
                              s3_endpoint_url=platform.config.s3_endpoint_url, budget=budget,
                              faults=platform.faults)
    artifacts.materialize(fetched, target, budget)
    shutil.rmtree(download_dir, ignore_errors=True)


async def _wait_healthy(platform: Platform, runtime: ContainerRuntime, deadline: float) -> bool:
    """Ping until 200 (and GET /models 200 for MME) or the deadline; False early if it exited."""
    while True:
        if await platform.container_client.healthy(runtime.running, multi_model=runtime.definition.multi_model):
            return True
        exited = await asyncio.to_thread(runtime.running.exit_code)
        if exited is not None or time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.2)


def ping_failure(model: ModelRecord, variant: str, failed: list[ContainerRuntime]) -> str:
    """SageMaker's FailureReason for containers that did not pass the ping health check."""
    if len(model.containers) == 1:
        who = "The primary container"
    elif len(failed) == 1:
        who = f"The container {failed[0].label}"
    else:
        who = "The containers " + ", ".join(c.label for c in failed)
    return (
        f"{who} for production variant {variant} did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint."
    )


async def _launch_instance(platform: Platform, endpoint: str, running: VariantDeployment) -> Instance:
    """Start one instance's containers (not yet healthy); on error the ones started are stopped."""
    instance = Instance(instance_id=f"i-{secrets.token_hex(8)}")
    try:
        for definition in running.model.containers:
            instance.containers.append(await _launch_container(platform, endpoint, running, instance, definition))
    except BaseException:
        await _stop_containers(platform, instance.containers)
        raise
    return instance


async def _launch_container(platform: Platform, endpoint: str, running: VariantDeployment, instance: Instance,
                            definition: ContainerDef) -> ContainerRuntime:
    """Start one container of ``instance``; an MME container gets its model cache."""
    delay_s = platform.faults.start_delay_s(definition.image)
    if delay_s > 0:
        await asyncio.sleep(delay_s)  # a fault a test armed (harness.faults): the start is held back
    single = len(running.model.containers) == 1
    if definition.multi_model:
        model_dir = running.variant_dir / instance.instance_id / f"models-{definition.hostname}"
        model_dir.mkdir(parents=True, exist_ok=True)
    else:
        model_dir = running.model_dirs[definition.hostname]
    stream = f"{running.name}/{instance.instance_id}" + ("" if single else f"/{definition.hostname}")
    spec = ContainerSpec(
        name=f"servekit-{endpoint}-{running.name}-{instance.instance_id}-{definition.hostname}".lower(),
        image=definition.image,
        hostname=definition.hostname,
        port=free_port(),
        safe_port_range=platform.ports.acquire(),
        multi_model=definition.multi_model,
        model_dir=model_dir.resolve(),
        log_path=stream_file(running.log_dir or platform.log_dir(endpoint), stream),
        environment=dict(definition.environment),
        limits=running.share,
        role_environment=platform.config.role_environment(),
    )
    try:
        started = await asyncio.to_thread(platform.backend.start, spec)
    except Exception:
        platform.ports.release(spec.safe_port_range)
        raise
    runtime = ContainerRuntime(endpoint=endpoint, definition=definition, running=started,
                               label="primary" if single else definition.hostname, log_stream=stream)
    if definition.multi_model:
        runtime.cache = ModelCache(
            runtime, platform.container_client, platform.metrics, platform.config, platform.faults,
            variant=running.name, instance_id=instance.instance_id, models_dir=spec.model_dir,
            prefix=definition.model_data_url or "", cache_enabled=definition.cache_enabled,
        )
    return runtime


async def _unhealthy(platform: Platform, containers: list[ContainerRuntime],
                     startup_s: float) -> list[ContainerRuntime]:
    """Wait for every container to pass its health check; the ones that did not (one per hostname)."""
    deadline = time.monotonic() + startup_s
    results = await asyncio.gather(*(_wait_healthy(platform, c, deadline) for c in containers))
    failed: dict[str, ContainerRuntime] = {}
    for container, ok in zip(containers, results, strict=True):
        if not ok:
            failed.setdefault(container.hostname, container)
    return list(failed.values())


def host_limits() -> InstanceLimits:
    """This machine's CPUs and memory: what a container's limits are capped to (an ml.m5.4xlarge on a 2-core laptop
    gets the laptop: docker refuses --cpus above the host's count)."""
    return InstanceLimits(vcpus=float(os.cpu_count() or 1), memory_mib=psutil.virtual_memory().total // 2**20)


def _plan_variant(platform: Platform, deployment: Deployment, variant: dict[str, Any],
                  model: ModelRecord) -> VariantDeployment:
    """The variant as it will run: instance count, weight, each container's share of an instance."""
    instance_type = variant.get("InstanceType", "ml.m5.large")
    limits = limits_for(instance_type)
    host = host_limits()
    host_cpus, host_mib = host.vcpus, host.memory_mib
    serverless = variant.get("ServerlessConfig")
    if serverless:
        # The container gets MemorySizeInMB exactly; AWS publishes no vCPU figure for serverless, so one vCPU per
        # 1024 MB (within the host's) is the harness's choice (docs/harness.md "Serverless").
        memory = int(serverless["MemorySizeInMB"])
        limits, host_mib = InstanceLimits(vcpus=memory / 1024, memory_mib=memory), memory
    weight = float(variant.get("InitialVariantWeight", 1.0))
    return VariantDeployment(
        name=variant["VariantName"],
        weight=weight,
        desired_count=int(variant.get("InitialInstanceCount", 0 if serverless else 1)),
        model=model,
        desired_weight=weight,
        variant_dir=deployment.work_dir / variant["VariantName"],
        share=InstanceLimits(vcpus=round(min(limits.vcpus, host_cpus) / len(model.containers), 2),
                             memory_mib=min(limits.memory_mib, host_mib) // len(model.containers)),
        startup_s=float(variant.get("ContainerStartupHealthCheckTimeoutInSeconds")
                        or platform.config.startup_timeout_s),
        log_dir=deployment.log_dir,
        routing=routing_strategy(variant),
    )


async def _extract_artifacts(platform: Platform, running: VariantDeployment, download_timeout: float) -> None:
    """Single-model artifacts are extracted once per variant and mounted (read-only) into each instance."""
    for definition in running.model.containers:
        if definition.multi_model:
            continue
        target = running.variant_dir / f"model-{definition.hostname}"
        try:
            await asyncio.wait_for(asyncio.to_thread(_prepare_single_model, platform, definition, target,
                                                     download_timeout),
                                   timeout=download_timeout)
        except TimeoutError:
            raise DeploymentFailed(
                f'Failed to download and extract model data for container "{definition.hostname}" within '
                f"ModelDataDownloadTimeoutInSeconds ({download_timeout:g} s)."
            ) from None
        except artifacts.ArtifactNotFound:
            raise DeploymentFailed(_download_failure(definition.hostname, definition.model_data_url or "")) from None
        except artifacts.ArtifactError as exc:
            raise DeploymentFailed(
                f'Failed to extract model data for container "{definition.hostname}": {exc}'
            ) from None
        running.model_dirs[definition.hostname] = target


async def start_variant(platform: Platform, deployment: Deployment, variant: dict[str, Any],
                        model: ModelRecord) -> VariantDeployment:
    """Start every instance of one variant and wait until all its containers are healthy."""
    running = _plan_variant(platform, deployment, variant, model)
    await _extract_artifacts(platform, running, float(variant.get("ModelDataDownloadTimeoutInSeconds")
                                                                 or DEFAULT_DOWNLOAD_TIMEOUT_S))
    try:
        # A serverless variant is started once here too, so a container that cannot pass the health check fails
        # the endpoint at CreateEndpoint; it then runs cold unless it has ProvisionedConcurrency.
        for _ in range(running.desired_count or 1):
            running.instances.append(await _launch_instance(platform, deployment.endpoint, running))
        failed = await _unhealthy(platform, running.containers(), running.startup_s)
        if failed:
            raise DeploymentFailed(ping_failure(model, running.name, failed))
    except BaseException:
        await stop_variant(platform, deployment.endpoint, running)
        raise
    if variant.get("ServerlessConfig"):
        await _make_serverless(platform, deployment.endpoint, running, variant["ServerlessConfig"])
    return running


async def _make_serverless(platform: Platform, endpoint: str, running: VariantDeployment,
                           config: dict[str, int]) -> None:
    """Give ``running`` its serverless state; without ProvisionedConcurrency its instance stops (cold)."""
    async def cold_start() -> None:
        instance = await _launch_instance(platform, endpoint, running)
        failed = await _unhealthy(platform, instance.containers, running.startup_s)
        if failed:
            await _stop_containers(platform, instance.containers)
            raise DeploymentFailed(ping_failure(running.model, running.name, failed))
        running.instances.append(instance)

    running.serverless = ServerlessState(config=config, cold_start=cold_start)
    if not running.serverless.provisioned:
        cold, running.instances = running.instances, []
        await _stop_instances(platform, endpoint, running.name, cold)


async def _stop_if_idle(platform: Platform, endpoint: str, variant: VariantDeployment) -> None:
    """A serverless variant without ProvisionedConcurrency, idle for serverless_idle_s, goes cold."""
    state = variant.serverless
    if state is None or state.provisioned or state.in_flight or not variant.instances or state.starting.locked():
        return
    if time.monotonic() - state.last_used < platform.config.serverless_idle_s:
        return
    idle, variant.instances = variant.instances, []
    await _stop_instances(platform, endpoint, variant.name, idle)


async def _stop_containers(platform: Platform, containers: list[ContainerRuntime]) -> None:
    async def stop(container: ContainerRuntime) -> None:
        try:
            await asyncio.to_thread(container.running.stop, platform.config.stop_grace_s)
        finally:
            platform.ports.release(container.running.spec.safe_port_range)

    await asyncio.gather(*(stop(c) for c in containers), return_exceptions=True)


async def _stop_instances(platform: Platform, endpoint: str, variant: str, instances: list[Instance]) -> None:
    """Stop the instances' containers (SIGTERM, then SIGKILL after the grace period)."""
    await _stop_containers(platform, [c for i in instances for c in i.containers])
    for instance in instances:
        if any(c.cache is not None for c in instance.containers):
            platform.metrics.set_loaded_models(endpoint, variant, instance.instance_id, 0)


async def stop_variant(platform: Platform, endpoint: str, variant: VariantDeployment) -> None:
    """Stop every container of a variant (a shadow's copies still running are cancelled first)."""
    for copy in list(variant.copies):
        copy.cancel()
    await asyncio.gather(*variant.copies, return_exceptions=True)
    await _stop_instances(platform, endpoint, variant.name, variant.instances)


async def replace_instance(platform: Platform, endpoint: str, variant: VariantDeployment, old: Instance) -> None:
    """Replace an instance whose container died, as SageMaker replaces unhealthy instances."""
    new = await _launch_instance(platform, endpoint, variant)
    failed = await _unhealthy(platform, new.containers, variant.startup_s)
    if failed:
        await _stop_containers(platform, new.containers)
        raise DeploymentFailed(ping_failure(variant.model, variant.name, failed))
    if old in variant.instances:
        variant.instances[variant.instances.index(old)] = new
        await _stop_instances(platform, endpoint, variant.name, [old])
    else:  # scale_variant took the old one out meanwhile (and stopped it): no replacement is wanted
        await _stop_instances(platform, endpoint, variant.name, [new])


async def scale_variant(platform: Platform, endpoint: str, variant: VariantDeployment, count: int) -> None:
    """Start or stop instances until ``variant`` has ``count`` (UpdateEndpointWeightsAndCapacities).

    New instances join the rotation only once all of them pass the ping health check; if one does not, they
    are stopped and DeploymentFailed says why. Surplus instances (the newest) leave the rotation, then stop.
    """
    new: list[Instance] = []
    try:
        while len(variant.instances) + len(new) < count:
            new.append(await _launch_instance(platform, endpoint, variant))
        failed = await _unhealthy(platform, [c for i in new for c in i.containers], variant.startup_s)
        if failed:
            raise DeploymentFailed(ping_failure(variant.model, variant.name, failed))
    except BaseException:
        await _stop_instances(platform, endpoint, variant.name, new)
        raise
    variant.instances.extend(new)
    surplus = variant.instances[count:]
    del variant.instances[count:]
    await _stop_instances(platform, endpoint, variant.name, surplus)


async def start_copies(platform: Platform, running: VariantDeployment, endpoint: str, count: int,
                       download_timeout: float) -> None:
    """An inference component's copies: its artifact extracted once, then ``count`` copies (one instance each)
    started and health-checked as scale_variant starts instances; DeploymentFailed says why they did not pass."""
    await _extract_artifacts(platform, running, download_timeout)
    await scale_variant(platform, endpoint, running, count)


async def monitor_deployment(platform: Platform, deployment: Deployment) -> None:
    """Every ``health_check_interval_s``: replace instances that have a container that exited."""
    interval = platform.config.health_check_interval_s
    while True:
        await asyncio.sleep(interval)
        for variant in deployment.variants + deployment.shadows + list(deployment.components.values()):
            for instance in list(variant.instances):
                await _replace_if_dead(platform, deployment.endpoint, variant, instance)
            await _stop_if_idle(platform, deployment.endpoint, variant)


async def _replace_if_dead(platform: Platform, endpoint: str, variant: VariantDeployment, instance: Instance) -> None:
    codes = await asyncio.gather(*(asyncio.to_thread(c.running.exit_code) for c in instance.containers))
    dead = [f"{c.label} ({c.running.ident}, exit code {code})"
            for c, code in zip(instance.containers, codes, strict=True) if code is not None]
    if not dead:
        return
    log.warning("endpoint %s variant %s instance %s: %s exited; replacing the instance",
                endpoint, variant.name, instance.instance_id, ", ".join(dead))
    for container in instance.containers:  # in its log stream too, where `servekit local logs` shows it
        with open(container.running.spec.log_path, "a") as stream:
            stream.write(f"[harness] {', '.join(dead)} exited; replacing instance {instance.instance_id}\n")
    if variant.serverless is not None:  # a serverless variant goes cold; its next request starts a container
        variant.instances.remove(instance)
        await _stop_instances(platform, endpoint, variant.name, [instance])
        return
    try:
        await replace_instance(platform, endpoint, variant, instance)
    except Exception as exc:  # tried again at the next interval
        log.warning("replacing instance %s of endpoint %s failed: %s", instance.instance_id, endpoint, exc)


async def start_deployment(platform: Platform, endpoint: str, config: dict[str, Any],
                           models: dict[str, ModelRecord]) -> Deployment:
    """Start all variants of an endpoint configuration; DeploymentFailed names what went wrong."""
    deployment = Deployment(
        endpoint=endpoint,
        work_dir=platform.work_dir(endpoint) / secrets.token_hex(4),
    )
    try:
        for variant in config["ProductionVariants"]:
            if not variant.get("ModelName"):  # capacity for inference components: nothing runs until one is created
                deployment.hosts.append(ComponentHost(name=variant["VariantName"],
                                                      instance_type=variant["InstanceType"],
                                                      instance_count=int(variant["InitialInstanceCount"]),
                                                      weight=float(variant.get("InitialVariantWeight", 1.0)),
                                                      routing=routing_strategy(variant)))
                continue
            model = models[variant["ModelName"].lower()]
            deployment.variants.append(await start_variant(platform, deployment, variant, model))
        # Shadow variants start as production variants do (their own instances and log streams).
        for variant in config.get("ShadowProductionVariants") or []:
            model = models[variant["ModelName"].lower()]
            deployment.shadows.append(await start_variant(platform, deployment, variant, model))
    except BaseException:
        await stop_deployment(platform, deployment)
        raise
    if config.get("DataCaptureConfig"):
        deployment.capture = DataCapture(endpoint, config["DataCaptureConfig"], region=platform.config.region,
                                         s3_endpoint_url=platform.config.s3_endpoint_url,
                                         flush_interval_s=platform.config.capture_flush_interval_s,
                                         flush_bytes=platform.config.capture_flush_bytes)
        deployment.capture.start()
    if platform.config.health_check_interval_s > 0:
        deployment.monitor = asyncio.create_task(monitor_deployment(platform, deployment))
    return deployment


async def stop_deployment(platform: Platform, deployment: Deployment) -> None:
    """Stop every container of the deployment and remove its extracted artifacts."""
    if deployment.monitor is not None:
        deployment.monitor.cancel()
        await asyncio.gather(deployment.monitor, return_exceptions=True)
    running = deployment.variants + deployment.shadows + list(deployment.components.values())
    await asyncio.gather(*(stop_variant(platform, deployment.endpoint, v) for v in running), return_exceptions=True)
    if deployment.capture is not None:  # after the containers: requests in flight have been captured
        await deployment.capture.close()
    await asyncio.to_thread(shutil.rmtree, deployment.work_dir, True)
