"""Endpoints on a local SageMaker for a team's tests: deploy an image and its model data, invoke it,
read its logs and metrics, inject faults, tear it down. The pytest plugin's fixtures hand these out
(``harness.pytest_plugin``; docs/testing.md); they work without pytest too.

Every call goes through boto3 against the harness, exactly as a script written for AWS would.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.local import LocalSageMaker
    from harness.running import Instance

#: CreateModel needs an execution role; the harness accepts any well-formed ARN.
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
#: Backends the plugin can be asked for; ``auto`` picks docker when an engine answers, else process.
BACKENDS = ("auto", "docker", "process")


class BackendUnavailable(Exception):
    """A backend was asked for by name and cannot run here; the message is one line naming it."""


def choose_backend(requested: str) -> tuple[str, str]:
    """``(backend, why)`` for ``requested`` (one of BACKENDS); BackendUnavailable when it cannot run."""
    from harness.backends.docker import docker_available

    if requested not in BACKENDS:
        raise BackendUnavailable(f"servekit backend {requested!r} is unknown: use one of {', '.join(BACKENDS)}")
    if requested == "process":
        return "process", "asked for"
    if docker_available():
        return "docker", "asked for" if requested == "docker" else "a Docker engine answers"
    if requested == "docker":
        raise BackendUnavailable("servekit backend docker was asked for but no Docker engine answers `docker info`")
    return "process", "no Docker engine answers `docker info`"


@dataclass(frozen=True)
class Container:
    """One container of a serial pipeline: an image, its model data and its environment."""

    image: str
    model_data: str | Path | None = None
    environment: Mapping[str, str] = field(default_factory=dict)

    def definition(self, *, multi_model: bool = False) -> dict[str, Any]:
        """The CreateModel container definition."""
        spec: dict[str, Any] = {"Image": self.image, "Environment": dict(self.environment)}
        if self.model_data is not None:
            spec["ModelDataUrl"] = str(self.model_data)
        if multi_model:
            spec["Mode"] = "MultiModel"
        return spec


@dataclass(frozen=True)
class Invoked:
    """A successful InvokeEndpoint answer."""

    body: bytes
    content_type: str
    variant: str

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class Endpoint:
    """One deployed endpoint: invoke it, read its logs and metrics, break it on purpose."""

    def __init__(self, sagemaker: LocalSageMaker, name: str, containers: Sequence[Container], multi_model: bool,
                 clients: tuple[Any, Any]) -> None:
        self.sagemaker = sagemaker
        self.name = name
        self.containers = tuple(containers)
        self.multi_model = multi_model
        self.sm, self.runtime = clients  # boto3 "sagemaker" and "sagemaker-runtime", pointed at the harness

    # -- using it --------------------------------------------------------------------------------------------
    def invoke(self, body: bytes | str, content_type: str | None = None, accept: str | None = None,
               **members: Any) -> Invoked:
        """InvokeEndpoint; ``members`` are InvokeEndpoint's own (TargetModel=, TargetContainerHostname=,
        CustomAttributes=, ...). A failure raises boto3's ClientError (``endpoint.runtime.exceptions``)."""
        if content_type is not None:
            members["ContentType"] = content_type
        if accept is not None:
            members["Accept"] = accept
        answer = self.runtime.invoke_endpoint(EndpointName=self.name, Body=body, **members)
        return Invoked(answer["Body"].read(), answer["ContentType"], answer["InvokedProductionVariant"])

    def describe(self) -> dict[str, Any]:
        """DescribeEndpoint."""
        described: dict[str, Any] = self.sm.describe_endpoint(EndpointName=self.name)
        return described

    @property
    def status(self) -> str:
        """EndpointStatus now: Creating, InService, Failed, ..."""
        return str(self.describe()["EndpointStatus"])

    def wait_in_service(self, timeout_s: float = 300.0) -> None:
        """Poll DescribeEndpoint until InService; AssertionError with the FailureReason if it fails or
        is still not in service after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            described = self.describe()
            status = described["EndpointStatus"]
            if status == "InService":
                return
            if status == "Failed" or time.monotonic() > deadline:
                raise AssertionError(f"endpoint {self.name} is {status} after {timeout_s:g} s: "
                                     f"{described.get('FailureReason', 'no FailureReason')}\n{self.logs()[-4000:]}")
            time.sleep(0.25)

    def logs(self, container: str | None = None) -> str:
        """The container log streams (``container``: 'primary' or a pipeline hostname; None: all)."""
        import httpx

        params = {"container": container} if container else {}
        answer = httpx.get(f"{self.sagemaker.endpoint_url}/_servekit/endpoints/{self.name}/logs", params=params,
                           timeout=30, trust_env=False)
        return answer.text

    def metrics(self) -> dict[str, Any]:
        """``{variant: {"metrics": {name: stats}, "containers": {...}}}``: SageMaker's metric names
        (Invocations, ModelLatency, ModelCacheHit, ModelUnloadingTime, ...; docs/harness.md)."""
        return self.sagemaker.platform.metrics.snapshot(self.name)

    def metric(self, name: str, variant: str = "AllTraffic") -> dict[str, float]:
        """One endpoint-level metric's statistics (SampleCount, Sum, Minimum, Maximum, Average); {} before
        its first sample."""
        stats: dict[str, float] = self.metrics().get(variant, {}).get("metrics", {}).get(name, {})
        return stats

    # -- faults (harness.faults) ------------------------------------------------------------------------------
    def instance_ids(self) -> list[str]:
        """The ids of the instances serving now (a replaced instance gets a new id)."""
        record = self.sagemaker.platform.store.endpoints.get(self.name.lower())
        deployment = getattr(record, "deployment", None)
        if deployment is None:
            return []
        return [instance.instance_id for variant in deployment.variants for instance in variant.instances]

    def _instance(self, index: int) -> Instance:
        record = self.sagemaker.platform.store.endpoints[self.name.lower()]
        return [i for variant in record.deployment.variants for i in variant.instances][index]

    def kill_instance(self, index: int = 0) -> str:
        """SIGKILL every container of one instance (as an instance failure); its id. Requests in flight
        fail with ModelError; the harness replaces the instance at its next health check."""
        instance = self._instance(index)
        for container in instance.containers:
            container.running.kill()
        return instance.instance_id

    def vanish(self, target_model: str | None = None) -> str:
        """Make a model artifact disappear (as a deleted S3 object): the MME ``target_model`` under the
        endpoint's prefix, or the model data of a single-model endpoint. Returns its URL."""
        from harness.artifacts import join_prefix

        prefix = str(self.containers[0].model_data)
        url = join_prefix(prefix, target_model) if target_model is not None else prefix
        self.sagemaker.platform.faults.vanish(url)
        return url


class EndpointFactory:
    """Deploys endpoints on one LocalSageMaker and deletes every one it deployed (``close``)."""

    def __init__(self, sagemaker: LocalSageMaker, *, instance_type: str = "ml.m5.large") -> None:
        from botocore.config import Config

        self.sagemaker = sagemaker
        self.instance_type = instance_type
        # No retries: a test sees each answer as it came (a killed instance's ModelError included).
        config = Config(retries={"max_attempts": 0}, read_timeout=120, connect_timeout=10)
        self.clients = (sagemaker.client("sagemaker", config=config),
                        sagemaker.client("sagemaker-runtime", config=config))
        self.deployed: list[Endpoint] = []

    def __call__(self, image: str | None = None, model_data: str | Path | None = None, *,
                 mme: bool = False, pipeline: Sequence[Container] = (), environment: Mapping[str, str] | None = None,
                 instance_count: int = 1, wait: bool = True, timeout_s: float = 300.0) -> Endpoint:
        """Deploy ``image`` with ``model_data`` (a path, file:// or s3:// URL; with ``mme`` the prefix the
        TargetModels are relative to), or the serial ``pipeline`` of containers; waits until InService."""
        containers = list(pipeline) or [Container(self._image(image), model_data, environment or {})]
        if pipeline and image is not None:
            raise ValueError("give either an image or a pipeline of containers, not both")
        name = f"test-{secrets.token_hex(4)}"
        self._create(name, containers, mme, instance_count)
        endpoint = Endpoint(self.sagemaker, name, containers, mme, self.clients)
        self.deployed.append(endpoint)
        if wait:
            endpoint.wait_in_service(timeout_s)
        return endpoint

    @staticmethod
    def _image(image: str | None) -> str:
        if image is None:
            raise ValueError("an endpoint needs an image (or a pipeline of containers)")
        return image

    def _create(self, name: str, containers: list[Container], mme: bool, instance_count: int) -> None:
        sm = self.clients[0]
        model: dict[str, Any] = {"ModelName": name, "ExecutionRoleArn": EXECUTION_ROLE}
        if len(containers) == 1:
            model["PrimaryContainer"] = containers[0].definition(multi_model=mme)
        else:
            model["Containers"] = [c.definition(multi_model=mme) for c in containers]
        sm.create_model(**model)
        sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": name, "InstanceType": self.instance_type,
            "InitialInstanceCount": instance_count}])
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)

    def close(self) -> None:
        """Delete every endpoint deployed here (waiting until its containers stopped), its config and model."""
        sm = self.clients[0]
        for endpoint in self.deployed:
            sm.delete_endpoint(EndpointName=endpoint.name)
        for endpoint in self.deployed:
            sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint.name,
                                                   WaiterConfig={"Delay": 0.25, "MaxAttempts": 800})
            sm.delete_endpoint_config(EndpointConfigName=endpoint.name)
            sm.delete_model(ModelName=endpoint.name)
        self.deployed.clear()
