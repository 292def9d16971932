"""ServerlessConfig in CreateEndpointConfig: SageMaker's rules beyond botocore's model (docs/sagemaker-contract.md
§13) and the harness's refusals (docs/harness.md "Serverless"). How a serverless variant runs is in
harness.deployment (cold, warm, idle) and harness.runtime (MaxConcurrency, cold starts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.state import ModelRecord

#: What a serverless endpoint cannot have (SageMaker's feature exclusions), and what the harness would not honour.
EXCLUDED = {
    "DataCaptureConfig": "data capture is not supported for serverless endpoints",
    "ShadowProductionVariants": "shadow variants are not supported for serverless endpoints",
    "AsyncInferenceConfig": "asynchronous inference is not supported for serverless endpoints",
}


def check_config(params: dict[str, Any], model: Callable[[str], ModelRecord]) -> None:
    """Refuse what a configuration with a serverless variant cannot have; ValueError says what."""
    serverless = [v for v in params["ProductionVariants"] if v.get("ServerlessConfig")]
    if not serverless:
        return
    if len(params["ProductionVariants"]) > 1:
        raise ValueError("A serverless endpoint has exactly one production variant (multiple production variants "
                         "are not supported for serverless endpoints)")
    for key, reason in EXCLUDED.items():
        if params.get(key) and (key != "DataCaptureConfig" or params[key].get("EnableCapture", True)):
            raise ValueError(f"{key}: {reason}")
    check_variant(serverless[0], model(serverless[0]["ModelName"]))


def check_variant(variant: dict[str, Any], model: ModelRecord) -> None:
    """One serverless variant: its sizes, no instance fields, a single-container model without MultiModel."""
    name, config = variant["VariantName"], variant["ServerlessConfig"]
    for field in ("InstanceType", "InitialInstanceCount"):
        if variant.get(field) is not None:
            raise ValueError(f"Variant {name}: {field} cannot be specified with ServerlessConfig")
    memory = int(config["MemorySizeInMB"])
    if memory % 1024:
        raise ValueError(f"Variant {name}: ServerlessConfig MemorySizeInMB {memory} is not one of 1024, 2048, 3072, "
                         "4096, 5120, 6144")
    provisioned = config.get("ProvisionedConcurrency")
    if provisioned is not None and int(provisioned) > int(config["MaxConcurrency"]):
        raise ValueError(f"Variant {name}: ServerlessConfig ProvisionedConcurrency ({provisioned}) must be less than "
                         f"or equal to MaxConcurrency ({config['MaxConcurrency']})")
    if any(c.multi_model for c in model.containers):
        raise ValueError(f"Variant {name}: multi-model endpoints are not supported for serverless endpoints")
    if len(model.containers) > 1:
        raise ValueError(f"Variant {name}: inference pipelines and multi-container models are not supported for "
                         "serverless endpoints")
