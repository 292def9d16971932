"""ml.* instance types -> CPU and memory limits given to each local instance's containers.

SageMaker runs every container of an instance on one EC2 host, so the limits below are per instance
and shared by its containers (the docker backend divides them evenly). Numbers are the EC2 sizes of
the instance families most used for real-time hosting; an unlisted type that botocore's enum accepts
gets the family-independent size guess in ``limits_for``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceLimits:
    """vCPUs and memory (MiB) of one instance."""

    vcpus: float
    memory_mib: int


# (vCPU, GiB) per size for the general (m), compute (c), memory (r) and burstable (t) families.
_SIZES: dict[str, dict[str, tuple[float, float]]] = {
    "t2": {"medium": (2, 4), "large": (2, 8), "xlarge": (4, 16), "2xlarge": (8, 32)},
    "m4": {"xlarge": (4, 16), "2xlarge": (8, 32), "4xlarge": (16, 64), "10xlarge": (40, 160), "16xlarge": (64, 256)},
    "c4": {"large": (2, 3.75), "xlarge": (4, 7.5), "2xlarge": (8, 15), "4xlarge": (16, 30), "8xlarge": (36, 60)},
}
for _family in ("m5", "m5d", "m6i", "m6g", "m7i", "m7g"):
    _SIZES[_family] = {"large": (2, 8), "xlarge": (4, 16), "2xlarge": (8, 32), "4xlarge": (16, 64),
                       "12xlarge": (48, 192), "24xlarge": (96, 384)}
for _family in ("c5", "c5d", "c6i", "c6g", "c7i", "c7g"):
    _SIZES[_family] = {"large": (2, 4), "xlarge": (4, 8), "2xlarge": (8, 16), "4xlarge": (16, 32),
                       "9xlarge": (36, 72), "18xlarge": (72, 144)}
for _family in ("r5", "r5d", "r6i", "r6g", "r7i", "r7g"):
    _SIZES[_family] = {"large": (2, 16), "xlarge": (4, 32), "2xlarge": (8, 64), "4xlarge": (16, 128),
                       "12xlarge": (48, 384), "24xlarge": (96, 768)}
for _family in ("g4dn", "g5"):
    _SIZES[_family] = {"xlarge": (4, 16), "2xlarge": (8, 32), "4xlarge": (16, 64), "8xlarge": (32, 128),
                       "12xlarge": (48, 192), "16xlarge": (64, 256)}
_SIZES["p3"] = {"2xlarge": (8, 61), "8xlarge": (32, 244), "16xlarge": (64, 488)}

# vCPUs by size name, for types outside the table (memory guessed at 4 GiB per vCPU).
_VCPUS_BY_SIZE = {"medium": 2, "large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32,
                  "9xlarge": 36, "12xlarge": 48, "16xlarge": 64, "18xlarge": 72, "24xlarge": 96}


def limits_for(instance_type: str) -> InstanceLimits:
    """CPU and memory of ``instance_type`` (e.g. ``ml.m5.large`` -> 2 vCPU, 8192 MiB)."""
    parts = instance_type.split(".")
    if len(parts) == 3 and parts[0] == "ml":
        family, size = parts[1], parts[2]
        known = _SIZES.get(family, {}).get(size)
        if known is not None:
            return InstanceLimits(vcpus=known[0], memory_mib=int(known[1] * 1024))
        vcpus = _VCPUS_BY_SIZE.get(size)
        if vcpus is not None:
            return InstanceLimits(vcpus=vcpus, memory_mib=vcpus * 4096)
    return InstanceLimits(vcpus=2, memory_mib=8192)


#: Hosting families with NVIDIA GPUs: SageMaker API reference, AIRecommendationInstanceDetail's
#: InstanceType values (docs.aws.amazon.com/sagemaker/latest/APIReference/API_AIRecommendationInstanceDetail.html:
#: g5, g6, g6e, g7e, p3, p4d, p4de, p5, p5e, p5en), plus g4dn (NVIDIA T4; EC2 "Accelerated computing"
#: instances, aws.amazon.com/ec2/instance-types/g4/).
NVIDIA_GPU_FAMILIES = frozenset({"g4dn", "g5", "g6", "g6e", "g7e", "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en"})
#: AWS Inferentia (inf1, inf2) and Trainium (trn1, trn1n, trn2): accelerators programmed through the
#: Neuron SDK, not CUDA (aws.amazon.com/ai/machine-learning/neuron/).
_NEURON_FAMILY = re.compile(r"^(inf|trn)\d")
#: Named like an accelerated-computing family (g or p, then a generation: g7, p6-b200) but not listed above.
_GPU_LIKE_FAMILY = re.compile(r"^[gp]\d")

NVIDIA = "nvidia"
NEURON = "neuron"
NO_ACCELERATOR = "none"
UNKNOWN_ACCELERATOR = "unknown"


def accelerator_of(instance_type: str) -> str:
    """``nvidia``, ``neuron`` (Inferentia/Trainium), ``none``, or ``unknown`` for a g/p family this
    table does not list (a newer GPU family: add it above rather than guess)."""
    parts = instance_type.split(".")
    family = parts[1] if len(parts) == 3 else ""
    if family in NVIDIA_GPU_FAMILIES:
        return NVIDIA
    if _NEURON_FAMILY.match(family):
        return NEURON
    if _GPU_LIKE_FAMILY.match(family):
        return UNKNOWN_ACCELERATOR
    return NO_ACCELERATOR
