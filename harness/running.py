"""What runs for an endpoint, as data: deployment -> variants -> instances -> containers.

SageMaker starts every container of a model on each instance of a variant (docs/sagemaker-contract.md
§3.2, §4.1). These records say what is running and how traffic picks among it; harness.deployment
starts and stops them, harness.runtime routes requests through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends.base import RunningContainer
from harness.instance_types import InstanceLimits
from harness.state import ContainerDef, ModelRecord

if TYPE_CHECKING:
    from harness.data_capture import DataCapture
    from harness.mme import ModelCache

#: ProductionVariantRoutingConfig's RoutingStrategy values (botocore's sagemaker model).
RANDOM = "RANDOM"
LEAST_OUTSTANDING_REQUESTS = "LEAST_OUTSTANDING_REQUESTS"


def routing_strategy(variant: dict[str, Any]) -> str | None:
    """A ProductionVariant's RoutingConfig.RoutingStrategy, None when unset."""
    return (variant.get("RoutingConfig") or {}).get("RoutingStrategy")


@dataclass
class ContainerRuntime:
    """One running container of one instance."""

    endpoint: str
    definition: ContainerDef
    running: RunningContainer
    label: str  # the name SageMaker's messages use: 'primary' or the hostname
    log_stream: str
    cache: ModelCache | None = None  # MME containers only

    @property
    def hostname(self) -> str:
        return self.definition.hostname


@dataclass
class Instance:
    """One instance of a variant: all of the model's containers."""

    instance_id: str
    containers: list[ContainerRuntime] = field(default_factory=list)
    in_flight: int = 0  # requests being answered (LEAST_OUTSTANDING_REQUESTS routing reads it)

    @contextlib.contextmanager
    def serving(self) -> Iterator[Instance]:
        """Count one request in flight on this instance while the block runs."""
        self.in_flight += 1
        try:
            yield self
        finally:
            self.in_flight -= 1

    def container(self, hostname: str) -> ContainerRuntime | None:
        """The container with ``hostname`` (exact match), if any."""
        for runtime in self.containers:
            if runtime.hostname == hostname:
                return runtime
        return None


@dataclass
class ServerlessState:
    """A serverless variant (ProductionVariantServerlessConfig): no instance while cold; docs/harness.md
    "Serverless"."""

    config: dict[str, int]  # ServerlessConfig as given
    #: Starts one instance and waits for its health check (harness.deployment sets it).
    cold_start: Callable[[], Awaitable[None]]
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)
    starting: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def max_concurrency(self) -> int:
        return int(self.config["MaxConcurrency"])

    @property
    def provisioned(self) -> int:
        return int(self.config.get("ProvisionedConcurrency") or 0)


@dataclass
class VariantDeployment:
    """A production variant's running instances."""

    name: str
    weight: float  # CurrentWeight: what routing uses
    desired_count: int
    model: ModelRecord
    desired_weight: float  # DesiredWeight: equal to weight except while UpdateEndpointWeightsAndCapacities runs
    instances: list[Instance] = field(default_factory=list)
    # How to launch more instances (replacements): where artifacts are, resources, startup window.
    variant_dir: Path = Path(".")
    model_dirs: dict[str, Path] = field(default_factory=dict)
    share: InstanceLimits | None = None
    startup_s: float = 240.0
    log_dir: Path | None = None  # where its containers' log streams go; None: the endpoint's
    #: A shadow variant's copies of production requests still running (harness.shadow bounds how many).
    copies: set[asyncio.Task[None]] = field(default_factory=set)
    serverless: ServerlessState | None = None  # a variant with ServerlessConfig
    #: An inference component's copies: the production variant hosting them (its instances are the copies).
    host: str | None = None
    #: What one copy of an inference component reserves on an instance (cores, MinMemoryRequiredInMb).
    reserved: InstanceLimits | None = None
    #: ProductionVariant RoutingConfig.RoutingStrategy; None (unset): round robin, the harness's choice
    #: (docs/harness.md "Routing across instances").
    routing: str | None = None
    _round_robin: itertools.count[int] = field(default_factory=itertools.count)
    _random: random.Random = field(default_factory=random.Random)

    def pick_instance(self, target_model: str | None) -> Instance:
        """The instance for the next request: MME requests stick to one instance per TargetModel (its
        cache lives there); else as RoutingConfig says (RANDOM, LEAST_OUTSTANDING_REQUESTS), or round robin."""
        if target_model is not None:
            return self.instances[zlib.crc32(target_model.encode()) % len(self.instances)]
        if self.routing == RANDOM:
            return self._random.choice(self.instances)
        start = next(self._round_robin)
        rotated = [self.instances[(start + i) % len(self.instances)] for i in range(len(self.instances))]
        if self.routing == LEAST_OUTSTANDING_REQUESTS:
            return min(rotated, key=lambda instance: instance.in_flight)  # ties: round robin order
        return rotated[0]

    def containers(self) -> list[ContainerRuntime]:
        """Every container of every instance."""
        return [c for i in self.instances for c in i.containers]


@dataclass
class ComponentHost:
    """A production variant with an instance type and count but no model: capacity for inference components."""

    name: str
    instance_type: str
    instance_count: int
    weight: float
    routing: str | None = None  # RoutingConfig.RoutingStrategy, applied across the components' copies


@dataclass
class Deployment:
    """All variants of one endpoint."""

    endpoint: str
    work_dir: Path
    variants: list[VariantDeployment] = field(default_factory=list)
    #: ShadowProductionVariants: sent a copy of production requests, their answers discarded.
    shadows: list[VariantDeployment] = field(default_factory=list)
    #: When the endpoint configuration has DataCaptureConfig.
    capture: DataCapture | None = None
    monitor: asyncio.Task[None] | None = None
    log_dir: Path | None = None  # None: Platform.log_dir(endpoint); batch transform jobs set their own
    #: Variants without a model, hosting inference components (docs/harness.md "Inference components").
    hosts: list[ComponentHost] = field(default_factory=list)
    #: Inference components in service, by lower-cased name; each one's instances are its copies.
    components: dict[str, VariantDeployment] = field(default_factory=dict)

    def variant(self, name: str) -> VariantDeployment | None:
        """The variant called ``name``."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        return None

    def shadow(self, name: str) -> VariantDeployment | None:
        """The shadow variant called ``name``."""
        for variant in self.shadows:
            if variant.name == name:
                return variant
        return None

    def pick_variant(self) -> VariantDeployment:
        """Weighted random choice, as SageMaker splits traffic by InitialVariantWeight."""
        weights = [max(v.weight, 0.0) for v in self.variants]
        if sum(weights) <= 0:
            return self.variants[0]
        return random.choices(self.variants, weights=weights)[0]

    def all_containers(self) -> list[ContainerRuntime]:
        """Every running container, across variants and instances."""
        return [c for v in self.variants + self.shadows + list(self.components.values()) for c in v.containers()]

    def host(self, name: str) -> ComponentHost | None:
        """The inference-component variant called ``name``."""
        return next((h for h in self.hosts if h.name == name), None)
