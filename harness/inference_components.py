"""Inference components (docs/harness.md "Inference components"): what a component's Specification may ask of the
harness, where its copies fit, how each copy runs (one container, one instance record of its own), and the
DescribeInferenceComponent shape. The operations are in harness.control_plane; routing is in harness.runtime.

A copy reserves NumberOfCpuCoresRequired and MinMemoryRequiredInMb of one instance of the variant that hosts it
(SageMaker API reference, InferenceComponentComputeResourceRequirements); its container is limited to those cores and
to MaxMemoryRequiredInMb (MinMemoryRequiredInMb when no maximum is given).
"""

from __future__ import annotations

import secrets
from typing import Any

from harness.core import Platform
from harness.deployment import DEFAULT_DOWNLOAD_TIMEOUT_S, host_limits
from harness.instance_types import InstanceLimits, limits_for
from harness.running import ComponentHost, Deployment, VariantDeployment
from harness.state import InferenceComponentRecord, ModelRecord

#: Specification members the harness does not honour, each refused in one line (docs/harness.md "Not emulated").
UNSUPPORTED_SPECIFICATION = {
    "BaseInferenceComponentName": "adapter inference components",
    "DataCacheConfig": "the data cache of inference components",
    "SchedulingConfig": "placement strategies and Availability Zone balance",
}
UNSUPPORTED_REQUIREMENTS = {
    "NumberOfAcceleratorDevicesRequired": "accelerator devices for inference components",
    "AcceleratorPartitionType": "accelerator partitions",
}


def check_specification(name: str, spec: dict[str, Any]) -> None:
    """Refuse, in one line (ValueError), what a Specification asks that the harness would not honour."""
    for key, what in UNSUPPORTED_SPECIFICATION.items():
        if spec.get(key):
            raise ValueError(f"Inference component {name}: {key} ({what}) is not supported by the local harness")
    requirements = spec.get("ComputeResourceRequirements")
    if not requirements:
        raise ValueError(f"Inference component {name}: Specification.ComputeResourceRequirements must be specified")
    for key, what in UNSUPPORTED_REQUIREMENTS.items():
        if requirements.get(key):
            raise ValueError(f"Inference component {name}: {key} ({what}) is not supported by the local harness")
    maximum = requirements.get("MaxMemoryRequiredInMb")
    if maximum is not None and int(maximum) < int(requirements["MinMemoryRequiredInMb"]):
        raise ValueError(f"Inference component {name}: MaxMemoryRequiredInMb ({maximum}) must not be less than "
                         f"MinMemoryRequiredInMb ({requirements['MinMemoryRequiredInMb']})")
    if bool(spec.get("ModelName")) == bool(spec.get("Container")):
        raise ValueError(f"Inference component {name}: Specification must have exactly one of ModelName and "
                         "Container")
    if (spec.get("Container") or {}).get("ContainerMetricsConfig"):
        raise ValueError(f"Inference component {name}: ContainerMetricsConfig is not supported by the local harness")


def check_model(name: str, model: ModelRecord) -> None:
    """A component runs one single-model container per copy."""
    if len(model.containers) > 1 or any(c.multi_model for c in model.containers):
        raise ValueError(f"Inference component {name}: model {model.name} must have one container in single-model "
                         "mode (inference pipelines, multi-container and multi-model models cannot be inference "
                         "components)")


def reservation(spec: dict[str, Any]) -> InstanceLimits:
    """What one copy reserves on an instance: its CPU cores (none when not given) and MinMemoryRequiredInMb."""
    requirements = spec["ComputeResourceRequirements"]
    return InstanceLimits(vcpus=float(requirements.get("NumberOfCpuCoresRequired") or 0),
                          memory_mib=int(requirements["MinMemoryRequiredInMb"]))


def check_fits(host: ComponentHost, placed: list[tuple[InstanceLimits, int]], name: str, wanted: InstanceLimits,
               copies: int) -> None:
    """``copies`` copies needing ``wanted`` each, with the ``placed`` (reservation, copies) of the host's other
    components, must fit its instances (first fit, largest first); else ValueError (the harness's wording: AWS
    documents none)."""
    size = limits_for(host.instance_type)
    free = [[size.vcpus, float(size.memory_mib)] for _ in range(host.instance_count)]
    demands = [r for r, count in placed for _ in range(count)] + [wanted] * copies
    for demand in sorted(demands, key=lambda r: (r.memory_mib, r.vcpus), reverse=True):
        slot = next((f for f in free if f[0] >= demand.vcpus and f[1] >= demand.memory_mib), None)
        if slot is None:
            raise ValueError(
                f"Inference component {name}: {copies} copies of {wanted.vcpus:g} CPU cores and {wanted.memory_mib} "
                f"MB each do not fit on variant {host.name} ({host.instance_count} x {host.instance_type}, "
                f"{size.vcpus:g} vCPUs and {size.memory_mib} MiB each) beside the copies already placed there")
        slot[0] -= demand.vcpus
        slot[1] -= demand.memory_mib


def placed_elsewhere(deployment: Deployment, host: str, records: list[InferenceComponentRecord],
                     but: str) -> list[tuple[InstanceLimits, int]]:
    """The reservations of the host's other components (their desired copies), ``but`` the one named."""
    return [(reservation(r.specification), r.copy_count) for r in records
            if r.variant_name == host and r.name.lower() != but.lower() and r.status != "Failed"]


def plan_copies(platform: Platform, deployment: Deployment, record: InferenceComponentRecord,
                model: ModelRecord) -> VariantDeployment:
    """The component's copies as a variant record: each copy an instance of one container with the component's
    limits (within this machine's, as for variants: docs/harness.md "Backends")."""
    spec = record.specification
    requirements = spec["ComputeResourceRequirements"]
    hosting = next(h for h in deployment.hosts if h.name == record.variant_name)
    size = limits_for(hosting.instance_type)
    cores = float(requirements.get("NumberOfCpuCoresRequired") or size.vcpus)
    memory = int(requirements.get("MaxMemoryRequiredInMb") or requirements["MinMemoryRequiredInMb"])
    startup = (spec.get("StartupParameters") or {}).get("ContainerStartupHealthCheckTimeoutInSeconds")
    host = host_limits()
    return VariantDeployment(
        name=record.name, weight=1.0, desired_count=record.copy_count, model=model, desired_weight=1.0,
        variant_dir=deployment.work_dir / f"ic-{record.name}-{secrets.token_hex(4)}",
        share=InstanceLimits(vcpus=round(min(cores, host.vcpus), 2), memory_mib=min(memory, host.memory_mib)),
        startup_s=float(startup or platform.config.startup_timeout_s),
        log_dir=deployment.log_dir, host=record.variant_name, reserved=reservation(spec), routing=hosting.routing,
    )


def download_timeout(spec: dict[str, Any]) -> float:
    """StartupParameters.ModelDataDownloadTimeoutInSeconds, with a variant's default."""
    return float((spec.get("StartupParameters") or {}).get("ModelDataDownloadTimeoutInSeconds")
                 or DEFAULT_DOWNLOAD_TIMEOUT_S)


def describe(record: InferenceComponentRecord, running: VariantDeployment | None) -> dict[str, Any]:
    """DescribeInferenceComponent's answer."""
    spec = dict(record.specification)
    if spec.get("Container"):
        container = dict(spec["Container"])
        image = container.pop("Image", None)
        spec["Container"] = {**container, "DeployedImage": {"SpecifiedImage": image, "ResolvedImage": image}}
    out: dict[str, Any] = {
        "InferenceComponentName": record.name, "InferenceComponentArn": record.arn,
        "EndpointName": record.endpoint_name, "EndpointArn": record.endpoint_arn, "VariantName": record.variant_name,
        "Specification": spec, "CreationTime": record.created, "LastModifiedTime": record.modified,
        "InferenceComponentStatus": record.status,
        "RuntimeConfig": {"DesiredCopyCount": record.copy_count,
                          "CurrentCopyCount": len(running.instances) if running is not None else 0},
    }
    if record.failure_reason:
        out["FailureReason"] = record.failure_reason
    return out
