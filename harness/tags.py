"""Tags of models, endpoint configurations and endpoints (AddTags, ListTags, DeleteTags, and ``Tags``
given at Create*).

Each record keeps its own tags (``record.tags``), so deleting a resource drops them and a resource
created again under the same name starts with none, as in SageMaker. botocore's service model
already checks key and value lengths and patterns and the 50-tag maximum of one request
(harness.validation); what it cannot express is checked here:

* keys starting with ``aws:`` (any case) are reserved. The message is the one SageMaker answers
  (quoted in https://github.com/aws/sagemaker-python-sdk/issues/1301);
* a resource holds at most 50 tags (https://docs.aws.amazon.com/general/latest/gr/aws_tagging.html;
  AWS publishes no message text for it, so the wording is the harness's);
* an ARN that names no model, endpoint configuration or endpoint of this harness is a
  ValidationException worded as SageMaker's other lookups are, ``Could not find <resource> "<arn>".``

A key given again overwrites its value (AddTags's documented behaviour; within one request the last
value wins); DeleteTags of keys the resource does not have succeeds.
"""

from __future__ import annotations

from typing import Any

from harness.errors import ControlPlaneError
from harness.state import Store

MAX_TAGS_PER_RESOURCE = 50
RESERVED_PREFIX = "aws:"
#: ARN resource type -> (the Store attribute holding such records, the name SageMaker's messages use).
RESOURCE_KINDS = {
    "model": ("models", "model"),
    "endpoint-config": ("configs", "endpoint configuration"),
    "endpoint": ("endpoints", "endpoint"),
    "transform-job": ("transform_jobs", "transform job"),
    "inference-component": ("inference_components", "inference component"),
}


def record_for_arn(store: Store, resource_arn: str) -> Any:
    """The model, endpoint configuration or endpoint record ``resource_arn`` names."""
    kind, _, name = resource_arn.split(":", 5)[-1].partition("/")
    collection, noun = RESOURCE_KINDS.get(kind, (None, "resource"))
    record = getattr(store, collection).get(name.lower()) if collection else None
    # The whole ARN must match: another region's or account's resource of the same name is not ours.
    if record is None or record.arn != resource_arn.lower():
        raise ControlPlaneError(f'Could not find {noun} "{resource_arn}".')
    return record


def check_keys(keys: list[str]) -> None:
    """Refuse keys with AWS's reserved prefix."""
    for key in keys:
        if key.lower().startswith(RESERVED_PREFIX):
            raise ControlPlaneError(f"System prefix '{RESERVED_PREFIX}' reserved for AWS usage in tag key: {key}")


def merged(existing: dict[str, str], tags: list[dict[str, str]], resource_arn: str) -> dict[str, str]:
    """``existing`` with ``tags`` added or overwritten, within the per-resource limit."""
    check_keys([tag["Key"] for tag in tags])
    result = dict(existing)
    result.update({tag["Key"]: tag["Value"] for tag in tags})
    if len(result) > MAX_TAGS_PER_RESOURCE:
        raise ControlPlaneError(
            f'Resource "{resource_arn}" would have {len(result)} tags; a resource may have at most '
            f"{MAX_TAGS_PER_RESOURCE}."
        )
    return result


def as_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """The wire form, in the order the keys were first added."""
    return [{"Key": key, "Value": value} for key, value in tags.items()]
