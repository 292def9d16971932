"""The SageMaker control plane subset (docs/sagemaker-contract.md §6): models, endpoint configurations, endpoints.

Every request is first validated against botocore's model of the operation (harness.validation);
the checks here are the ones the service model cannot express (existence, uniqueness, container
rules of MultiModel / Direct / Serial, image labels through the backend). Messages follow SageMaker's
(``Cannot create already existing model "<arn>".``, ``Could not find endpoint "<arn>".``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from harness import inference_components as components
from harness import tags
from harness.async_inference import AsyncQueue, check_config
from harness.core import Platform
from harness.data_capture import check_config as check_capture
from harness.deployment import (
    DeploymentFailed,
    scale_variant,
    start_copies,
    start_deployment,
    stop_deployment,
    stop_variant,
)
from harness.errors import ControlPlaneError
from harness.running import ComponentHost, Deployment, VariantDeployment
from harness.runtime import Router
from harness.serverless import check_config as check_serverless
from harness.state import (
    ContainerDef,
    EndpointConfigRecord,
    EndpointRecord,
    InferenceComponentRecord,
    ModelRecord,
    TransformJobRecord,
    arn,
)
from harness.transform import check_request, run_transform_job

log = logging.getLogger("harness")

Operation = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
ENV_TOTAL_LIMIT = 32 * 1024


def _paginate(items: list[dict[str, Any]], params: dict[str, Any], key: str,
              default_limit: int = 10) -> dict[str, Any]:
    """SageMaker List* paging: MaxResults (default 10) and an opaque NextToken (here an offset)."""
    limit = int(params.get("MaxResults") or default_limit)
    token = params.get("NextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise ControlPlaneError(f"Invalid pagination token {token!r}.") from None
    page = items[start:start + limit]
    out: dict[str, Any] = {key: page}
    if start + limit < len(items):
        out["NextToken"] = str(start + limit)
    return out


def _filter_sort(records: list[Any], params: dict[str, Any], name_attr: str = "name") -> list[Any]:
    needle = (params.get("NameContains") or "").lower()
    selected = [r for r in records if needle in getattr(r, name_attr).lower()]
    before, after = params.get("CreationTimeBefore"), params.get("CreationTimeAfter")
    if before is not None:
        selected = [r for r in selected if r.created < float(before)]
    if after is not None:
        selected = [r for r in selected if r.created > float(after)]
    sort_by = params.get("SortBy") or "CreationTime"
    descending = (params.get("SortOrder") or "Descending") == "Descending"
    if sort_by == "Name":
        selected.sort(key=lambda r: getattr(r, name_attr).lower(), reverse=descending)
    elif sort_by == "Status":
        selected.sort(key=lambda r: r.status, reverse=descending)
    else:
        selected.sort(key=lambda r: r.created, reverse=descending)
    return selected


def _containers_and_mode(params: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """CreateModel's containers and how they run: "Single", "Serial" or "Direct"; SageMaker's rules."""
    primary, listed = params.get("PrimaryContainer"), params.get("Containers")
    if primary is not None and listed:
        raise ControlPlaneError("Specify either PrimaryContainer or Containers, not both.")
    raw = [primary] if primary is not None else list(listed or [])
    if not raw:
        raise ControlPlaneError("Either PrimaryContainer or Containers must be specified.")
    requested_mode = (params.get("InferenceExecutionConfig") or {}).get("Mode", "Serial")
    mode = "Direct" if requested_mode == "Direct" and primary is None else ("Single" if len(raw) == 1 else "Serial")
    if len(raw) > 1 or mode == "Direct":
        _check_hostnames([c.get("ContainerHostname") for c in raw], direct=mode == "Direct")
    multi = [c for c in raw if c.get("Mode") == "MultiModel"]
    if len(multi) > 1 and len(raw) > 1:
        raise ControlPlaneError(
            "More than one container in MultiModel mode is not supported with inference pipeline."
        )
    if multi and mode == "Direct":
        raise ControlPlaneError("Containers in MultiModel mode are not supported with Direct inference execution.")
    return raw, mode


def _check_hostnames(hostnames: list[str | None], *, direct: bool) -> None:
    if direct and not all(hostnames):
        raise ControlPlaneError(
            "ContainerHostname must be specified for every container when InferenceExecutionConfig "
            "Mode is Direct."
        )
    if any(hostnames) and not all(hostnames):
        raise ControlPlaneError(
            "ContainerHostname must be specified for all containers or for none of them."
        )
    given = [h for h in hostnames if h]
    duplicates = sorted({h for h in given if given.count(h) > 1})
    if duplicates:
        raise ControlPlaneError(f"ContainerHostname values must be unique: {', '.join(duplicates)}.")


def _desired_changes(endpoint_arn: str, deployment: Deployment,
                     requested: list[dict[str, Any]]) -> list[tuple[VariantDeployment, dict[str, Any]]]:
    """Each DesiredWeightAndCapacity with the running variant it names; the refusals of docs/harness.md
    "Control plane" (the wording is the harness's: AWS publishes none for this operation)."""
    changes: list[tuple[VariantDeployment, dict[str, Any]]] = []
    for change in requested:
        name = change["VariantName"]
        variant = deployment.variant(name) or deployment.shadow(name)
        if variant is None:
            raise ControlPlaneError(f'The variant {name} does not exist in endpoint "{endpoint_arn}".')
        if any(v is variant for v, _ in changes):
            raise ControlPlaneError(f"Variant name {name} is given more than once; names must be unique.")
        if change.get("ServerlessUpdateConfig"):
            raise ControlPlaneError(f"Variant {name}: ServerlessUpdateConfig is not supported by the local "
                                    "harness (change a serverless variant with UpdateEndpoint).")
        if variant.serverless is not None and change.get("DesiredInstanceCount") is not None:
            raise ControlPlaneError(f"Variant {name}: DesiredInstanceCount cannot be changed for a serverless variant.")
        if change.get("DesiredInstanceCount") == 0:
            raise ControlPlaneError(f"Variant {name}: DesiredInstanceCount must be at least 1; only endpoints "
                                    "with inference components scale to zero instances.")
        changes.append((variant, change))
    return changes


def _check_shadow_variants(params: dict[str, Any]) -> None:
    """SageMaker's rule for ShadowProductionVariants (API reference, CreateEndpointConfig: "you can only
    specify one variant for ProductionVariants and one variant for ShadowProductionVariants"), and the
    harness's refusal of a shadow behind an asynchronous endpoint (docs/harness.md "Shadow variants")."""
    shadows = params.get("ShadowProductionVariants") or []
    if not shadows:
        return
    if len(params["ProductionVariants"]) != 1 or len(shadows) != 1:
        raise ControlPlaneError("With ShadowProductionVariants, specify exactly one variant in ProductionVariants "
                                "and one in ShadowProductionVariants.")
    if params.get("AsyncInferenceConfig"):
        raise ControlPlaneError("ShadowProductionVariants with AsyncInferenceConfig is not supported by the local "
                                "harness (asynchronous requests would not be copied to the shadow variant).")


def _check_data_capture(params: dict[str, Any]) -> None:
    """DataCaptureConfig: what the harness does not honour is refused (docs/harness.md "Data capture")."""
    capture = params.get("DataCaptureConfig")
    if not capture:
        return
    try:
        check_capture(capture)
    except ValueError as exc:
        raise ControlPlaneError(f"{exc}.") from None
    if params.get("AsyncInferenceConfig"):
        raise ControlPlaneError("DataCaptureConfig with AsyncInferenceConfig is not supported by the local harness "
                                "(asynchronous requests would not be captured).")


def _variant_summary(variant: VariantDeployment, created: float) -> dict[str, Any]:
    """DescribeEndpoint's ProductionVariantSummary of a running production or shadow variant; a serverless one has
    its ServerlessConfig instead of instance counts."""
    summary: dict[str, Any] = {
        "VariantName": variant.name,
        "DeployedImages": [{"SpecifiedImage": c.image, "ResolvedImage": c.image, "ResolutionTime": created}
                           for c in variant.model.containers],
        "CurrentWeight": variant.weight,
        "DesiredWeight": variant.desired_weight,
    }
    if variant.serverless is not None:
        summary["CurrentServerlessConfig"] = summary["DesiredServerlessConfig"] = variant.serverless.config
    else:
        summary["CurrentInstanceCount"] = len(variant.instances)
        summary["DesiredInstanceCount"] = variant.desired_count
    return summary


def _host_summary(host: ComponentHost) -> dict[str, Any]:
    """DescribeEndpoint's ProductionVariantSummary of a variant that hosts inference components (no model)."""
    return {"VariantName": host.name, "CurrentWeight": host.weight, "DesiredWeight": host.weight,
            "CurrentInstanceCount": host.instance_count, "DesiredInstanceCount": host.instance_count}


def _check_component_hosts(params: dict[str, Any]) -> None:
    """Variants without ModelName host inference components: all of the configuration's variants are such, with an
    instance type and count, and nothing the harness would not honour beside them (docs/harness.md "Inference
    components")."""
    variants = params["ProductionVariants"]
    if any(not v.get("ModelName") for v in params.get("ShadowProductionVariants") or []):
        raise ControlPlaneError("ModelName must be specified for every shadow variant.")
    hosts = [v for v in variants if not v.get("ModelName")]
    if not hosts:
        if any(v.get("ManagedInstanceScaling") for v in variants):  # SageMaker's wording: sagemaker-contract §14
            raise ControlPlaneError("ManagedInstanceScaling is only supported for inference component endpoints.")
        return
    if len(hosts) != len(variants):
        raise ControlPlaneError("Either every production variant names a model or none does (variants without "
                                "ModelName host inference components).")
    if not params.get("ExecutionRoleArn"):  # required by SageMaker here (sagemaker-contract §14); the wording is ours
        raise ControlPlaneError("ExecutionRoleArn must be specified for an endpoint configuration that hosts "
                                "inference components.")
    for key in ("ShadowProductionVariants", "AsyncInferenceConfig", "DataCaptureConfig"):
        if params.get(key):
            raise ControlPlaneError(f"{key} with inference components is not supported by the local harness.")
    for variant in hosts:
        if variant.get("ServerlessConfig"):
            raise ControlPlaneError(f"Variant {variant['VariantName']}: ServerlessConfig cannot host inference "
                                    "components; specify InstanceType and InitialInstanceCount.")
        if (variant.get("ManagedInstanceScaling") or {}).get("Status") == "ENABLED":
            raise ControlPlaneError(f"Variant {variant['VariantName']}: ManagedInstanceScaling is not supported by "
                                    "the local harness (the variant keeps InitialInstanceCount instances).")


class ControlPlane:
    """Implements the operations against a Platform's store and backend."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.store = platform.store
        self._background: set[asyncio.Task[None]] = set()  # referenced until done, so none is collected
        self.operations: dict[str, Operation] = {
            "CreateModel": self.create_model,
            "DescribeModel": self.describe_model,
            "ListModels": self.list_models,
            "DeleteModel": self.delete_model,
            "CreateEndpointConfig": self.create_endpoint_config,
            "DescribeEndpointConfig": self.describe_endpoint_config,
            "ListEndpointConfigs": self.list_endpoint_configs,
            "DeleteEndpointConfig": self.delete_endpoint_config,
            "CreateEndpoint": self.create_endpoint,
            "DescribeEndpoint": self.describe_endpoint,
            "ListEndpoints": self.list_endpoints,
            "DeleteEndpoint": self.delete_endpoint,
            "UpdateEndpoint": self.update_endpoint,
            "UpdateEndpointWeightsAndCapacities": self.update_endpoint_weights_and_capacities,
            "AddTags": self.add_tags,
            "ListTags": self.list_tags,
            "DeleteTags": self.delete_tags,
            "CreateTransformJob": self.create_transform_job,
            "DescribeTransformJob": self.describe_transform_job,
            "ListTransformJobs": self.list_transform_jobs,
            "StopTransformJob": self.stop_transform_job,
            "CreateInferenceComponent": self.create_inference_component,
            "DescribeInferenceComponent": self.describe_inference_component,
            "ListInferenceComponents": self.list_inference_components,
            "DeleteInferenceComponent": self.delete_inference_component,
            "UpdateInferenceComponentRuntimeConfig": self.update_inference_component_runtime_config,
            "UpdateInferenceComponent": self.update_inference_component,
        }
        self.router = Router(platform)  # batch transform jobs send their mini-batches through it

    def _arn(self, kind: str, name: str) -> str:
        return arn(self.platform.config.region, kind, name)

    # -- models --------------------------------------------------------------------------------------
    def _model(self, name: str) -> ModelRecord:
        record = self.store.models.get(name.lower())
        if record is None:
            raise ControlPlaneError(f'Could not find model "{self._arn("model", name)}".')
        return record

    async def create_model(self, params: dict[str, Any]) -> dict[str, Any]:
        """CreateModel: one PrimaryContainer, or Containers (1-15) run Serial or Direct."""
        name = params["ModelName"]
        model_arn = self._arn("model", name)
        if name.lower() in self.store.models:
            raise ControlPlaneError(f'Cannot create already existing model "{model_arn}".')
        raw, mode = _containers_and_mode(params)
        containers = [await self._container_def(container, index, len(raw), mode)
                      for index, container in enumerate(raw)]
        total_env = sum(len(k.encode()) + len(v.encode()) for c in containers for k, v in c.environment.items())
        if total_env > ENV_TOTAL_LIMIT:
            raise ControlPlaneError(
                f"The total size of the Environment maps of all containers is {total_env} bytes, more than the "
                f"limit of {ENV_TOTAL_LIMIT} bytes."
            )
        self.store.models[name.lower()] = ModelRecord(
            name=name, arn=model_arn, created=time.time(), params=params, containers=containers, mode=mode,
            tags=tags.merged({}, params.get("Tags") or [], model_arn),
        )
        return {"ModelArn": model_arn}

    async def _container_def(self, container: dict[str, Any], index: int, count: int, mode: str) -> ContainerDef:
        """One container of CreateModel, checked (the image through the backend) and normalized."""
        image = container.get("Image")
        hostname = "primary" if count == 1 and mode != "Direct" else (
            container.get("ContainerHostname") or f"container-{index + 1}")
        if not image:
            raise ControlPlaneError(
                f"Image must be specified for container {hostname}; model packages are not supported locally."
            )
        multi_model = container.get("Mode") == "MultiModel"
        if multi_model and not container.get("ModelDataUrl"):
            raise ControlPlaneError(
                f"ModelDataUrl (the S3 prefix of the models) must be specified for container {hostname} "
                "in MultiModel mode."
            )
        if multi_model and container.get("ModelDataSource"):
            raise ControlPlaneError("ModelDataSource is not supported for containers in MultiModel mode.")
        try:
            await asyncio.to_thread(self.platform.backend.check_image, image,
                                    multi_model=multi_model, bind_to_port=count > 1)
        except ValueError as exc:
            raise ControlPlaneError(str(exc)) from None
        cache = ((container.get("MultiModelConfig") or {}).get("ModelCacheSetting") or "Enabled") != "Disabled"
        return ContainerDef(
            hostname=hostname,
            image=image,
            multi_model=multi_model,
            model_data_url=container.get("ModelDataUrl"),
            environment=dict(container.get("Environment") or {}),
            cache_enabled=cache,
            model_data_source=container.get("ModelDataSource"),
        )

    async def describe_model(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeModel: the request as given, plus ARN and CreationTime."""
        record = self._model(params["ModelName"])
        out: dict[str, Any] = {"ModelName": record.name, "ModelArn": record.arn, "CreationTime": record.created,
                               "EnableNetworkIsolation": bool(record.params.get("EnableNetworkIsolation", False))}
        for key in ("PrimaryContainer", "Containers", "InferenceExecutionConfig", "ExecutionRoleArn", "VpcConfig"):
            if key in record.params:
                out[key] = record.params[key]
        return out

    async def list_models(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListModels with NameContains, creation-time filters, sorting and paging."""
        records = _filter_sort(list(self.store.models.values()), params)
        items = [{"ModelName": r.name, "ModelArn": r.arn, "CreationTime": r.created} for r in records]
        return _paginate(items, params, "Models")

    async def delete_model(self, params: dict[str, Any]) -> dict[str, Any]:
        """DeleteModel (running endpoints keep their containers, as in SageMaker)."""
        name = params["ModelName"]
        if name.lower() not in self.store.models:
            raise ControlPlaneError(f'Could not find model "{self._arn("model", name)}".')
        del self.store.models[name.lower()]
        return {}

    # -- endpoint configurations ------------------------------------------------------------------------
    def _config(self, name: str) -> EndpointConfigRecord:
        record = self.store.configs.get(name.lower())
        if record is None:
            raise ControlPlaneError(
                f'Could not find endpoint configuration "{self._arn("endpoint-config", name)}".'
            )
        return record

    async def create_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """CreateEndpointConfig: 1-10 instance-based production variants of existing models."""
        name = params["EndpointConfigName"]
        config_arn = self._arn("endpoint-config", name)
        if name.lower() in self.store.configs:
            raise ControlPlaneError(f'Cannot create already existing endpoint configuration "{config_arn}".')
        if params.get("ExplainerConfig"):
            raise ControlPlaneError("ExplainerConfig is not supported by the local harness.")
        if params.get("AsyncInferenceConfig"):
            try:
                check_config(params["AsyncInferenceConfig"])
            except ValueError as exc:
                raise ControlPlaneError(f"{exc}.") from None
        _check_data_capture(params)
        _check_shadow_variants(params)
        _check_component_hosts(params)
        seen: set[str] = set()
        for variant in params["ProductionVariants"] + (params.get("ShadowProductionVariants") or []):
            self._check_variant(variant, seen)
        if any(v.get("ServerlessConfig") for v in params.get("ShadowProductionVariants") or []):
            raise ControlPlaneError("ServerlessConfig: shadow variants are not supported for serverless endpoints.")
        try:
            check_serverless(params, self._model)
        except ValueError as exc:
            raise ControlPlaneError(f"{exc}.") from None
        self.store.configs[name.lower()] = EndpointConfigRecord(
            name=name, arn=config_arn, created=time.time(), params=params,
            tags=tags.merged({}, params.get("Tags") or [], config_arn),
        )
        return {"EndpointConfigArn": config_arn}

    def _check_variant(self, variant: dict[str, Any], seen: set[str]) -> None:
        """One production or shadow variant: a unique name, an existing model, instance-based."""
        variant_name = variant["VariantName"]
        if variant_name in seen:
            raise ControlPlaneError(f"Variant name {variant_name} is used more than once; names must be unique.")
        seen.add(variant_name)
        if variant.get("ModelName"):
            self._model(variant["ModelName"])
        if variant.get("ServerlessConfig"):
            return  # checked by harness.serverless
        if not variant.get("InstanceType"):
            raise ControlPlaneError(f"Variant {variant_name}: InstanceType must be specified.")
        if not variant.get("InitialInstanceCount"):
            raise ControlPlaneError(f"Variant {variant_name}: InitialInstanceCount must be specified.")

    async def describe_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeEndpointConfig."""
        record = self._config(params["EndpointConfigName"])
        variants = [{"InitialVariantWeight": 1.0, **v} for v in record.variants]
        out = {"EndpointConfigName": record.name, "EndpointConfigArn": record.arn,
               "ProductionVariants": variants, "CreationTime": record.created}
        if record.params.get("ShadowProductionVariants"):
            out["ShadowProductionVariants"] = [{"InitialVariantWeight": 1.0, **v}
                                               for v in record.params["ShadowProductionVariants"]]
        for key in ("KmsKeyId", "DataCaptureConfig", "AsyncInferenceConfig"):
            if key in record.params:
                out[key] = record.params[key]
        return out

    async def list_endpoint_configs(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListEndpointConfigs."""
        records = _filter_sort(list(self.store.configs.values()), params)
        items = [{"EndpointConfigName": r.name, "EndpointConfigArn": r.arn, "CreationTime": r.created}
                 for r in records]
        return _paginate(items, params, "EndpointConfigs")

    async def delete_endpoint_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """DeleteEndpointConfig (endpoints built from it keep running)."""
        name = params["EndpointConfigName"]
        self._config(name)
        del self.store.configs[name.lower()]
        return {}

    # -- endpoints --------------------------------------------------------------------------------------
    def _endpoint(self, name: str) -> EndpointRecord:
        record = self.store.endpoints.get(name.lower())
        if record is None:
            # The endpoint_deleted waiter treats exactly this error code as success (contract §6.5).
            raise ControlPlaneError(f'Could not find endpoint "{self._arn("endpoint", name)}".')
        return record

    def _snapshot_models(self, config: EndpointConfigRecord) -> dict[str, ModelRecord]:
        variants = config.variants + list(config.params.get("ShadowProductionVariants") or [])
        return {v["ModelName"].lower(): self._model(v["ModelName"]) for v in variants if v.get("ModelName")}

    async def create_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        """CreateEndpoint: answers at once with Creating; containers start in the background."""
        name = params["EndpointName"]
        endpoint_arn = self._arn("endpoint", name)
        if name.lower() in self.store.endpoints:
            raise ControlPlaneError(f'Cannot create already existing endpoint "{endpoint_arn}".')
        config = self._config(params["EndpointConfigName"])
        models = self._snapshot_models(config)
        now = time.time()
        record = EndpointRecord(name=name, arn=endpoint_arn, config_name=config.name, created=now, modified=now,
                                tags=tags.merged({}, params.get("Tags") or [], endpoint_arn))
        self.store.endpoints[name.lower()] = record
        record.task = asyncio.create_task(self._deploy(record, config, models))  # referenced by the record
        return {"EndpointArn": endpoint_arn}

    async def _deploy(self, record: EndpointRecord, config: EndpointConfigRecord,
                      models: dict[str, ModelRecord]) -> None:
        try:
            deployment = await start_deployment(self.platform, record.name, config.params, models)
        except DeploymentFailed as exc:
            log.warning("endpoint %s failed: %s", record.name, exc)
            record.set_status("Failed", str(exc))
            return
        except Exception as exc:  # a harness defect must still end in a visible state
            log.exception("endpoint %s failed", record.name)
            record.set_status("Failed", f"The local harness could not start the endpoint: {exc}")
            return
        record.deployment = deployment
        record.failure_reason = None
        await self._attach_async_queue(record, config)
        record.set_status("InService")

    async def _attach_async_queue(self, record: EndpointRecord, config: EndpointConfigRecord) -> None:
        """Give the endpoint the asynchronous queue its configuration asks for (or take it away)."""
        wanted = config.params.get("AsyncInferenceConfig")
        queue: AsyncQueue | None = record.async_queue
        if queue is not None and not wanted:
            record.async_queue = None
            await queue.stop()
        elif queue is not None and wanted:
            queue.config = wanted  # new requests use the new output locations
        elif wanted:
            record.async_queue = AsyncQueue(self.platform, self.router, record, wanted)
            record.async_queue.start()

    async def describe_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeEndpoint: status, FailureReason and a summary per production variant."""
        record = self._endpoint(params["EndpointName"])
        out: dict[str, Any] = {
            "EndpointName": record.name,
            "EndpointArn": record.arn,
            "EndpointConfigName": record.config_name,
            "EndpointStatus": record.status,
            "CreationTime": record.created,
            "LastModifiedTime": record.modified,
        }
        if record.failure_reason:
            out["FailureReason"] = record.failure_reason
        deployment = record.deployment
        if deployment is not None:
            out["ProductionVariants"] = ([_variant_summary(v, record.created) for v in deployment.variants]
                                         + [_host_summary(h) for h in deployment.hosts])
            if deployment.shadows:
                out["ShadowProductionVariants"] = [_variant_summary(v, record.created) for v in deployment.shadows]
            if deployment.capture is not None:
                out["DataCaptureConfig"] = deployment.capture.summary()
        return out

    async def list_endpoints(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListEndpoints with StatusEquals, NameContains, time filters, sorting and paging."""
        records = list(self.store.endpoints.values())
        if params.get("StatusEquals"):
            records = [r for r in records if r.status == params["StatusEquals"]]
        if params.get("LastModifiedTimeBefore") is not None:
            records = [r for r in records if r.modified < float(params["LastModifiedTimeBefore"])]
        if params.get("LastModifiedTimeAfter") is not None:
            records = [r for r in records if r.modified > float(params["LastModifiedTimeAfter"])]
        records = _filter_sort(records, params)
        items = [{"EndpointName": r.name, "EndpointArn": r.arn, "CreationTime": r.created,
                  "LastModifiedTime": r.modified, "EndpointStatus": r.status} for r in records]
        return _paginate(items, params, "Endpoints")

    async def delete_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        """DeleteEndpoint: Deleting while its containers stop, then gone."""
        record = self._endpoint(params["EndpointName"])
        if record.status == "Deleting":
            return {}
        record.set_status("Deleting")
        task = asyncio.create_task(self._teardown(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return {}

    async def _stop(self, record: EndpointRecord) -> None:
        """Stop what runs for an endpoint: its create or update task, its asynchronous queue, then its
        containers."""
        task = record.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if record.async_queue is not None:
            queue, record.async_queue = record.async_queue, None
            await queue.stop()
        if record.deployment is not None:
            await stop_deployment(self.platform, record.deployment)
            record.deployment = None

    async def _teardown(self, record: EndpointRecord) -> None:
        # Its inference components go with it (the harness's choice: docs/harness.md "Inference components").
        gone = [c for c in self.store.inference_components.values() if c.endpoint_name.lower() == record.name.lower()]
        for component in gone:
            del self.store.inference_components[component.name.lower()]
        await asyncio.gather(*(self._cancel(c.task) for c in gone))
        await self._stop(record)
        self.platform.metrics.forget(record.name)
        if self.store.endpoints.get(record.name.lower()) is record:
            del self.store.endpoints[record.name.lower()]

    async def shutdown(self) -> None:
        """Stop every endpoint's and transform job's containers (the harness is stopping); their metrics
        stay readable."""
        jobs = [j.task for j in self.store.transform_jobs.values() if j.task is not None and not j.task.done()]
        for task in jobs:
            task.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        await asyncio.gather(*(self._stop(r) for r in list(self.store.endpoints.values())),
                             return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
        self.store.endpoints.clear()

    async def update_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        """UpdateEndpoint: start the new configuration, switch traffic to it, stop the old one."""
        record = self._endpoint(params["EndpointName"])
        if record.status != "InService":
            raise ControlPlaneError(f'Cannot update in-progress endpoint "{record.arn}".')
        config = self._config(params["EndpointConfigName"])
        if (record.deployment is not None and record.deployment.hosts) or any(
                not v.get("ModelName") for v in config.variants):
            raise ControlPlaneError("UpdateEndpoint of an endpoint with inference components is not supported by the "
                                    "local harness.")
        models = self._snapshot_models(config)
        record.set_status("Updating")
        record.task = asyncio.create_task(self._update(record, config, models))
        return {"EndpointArn": record.arn}

    async def _update(self, record: EndpointRecord, config: EndpointConfigRecord,
                      models: dict[str, ModelRecord]) -> None:
        try:
            deployment = await start_deployment(self.platform, record.name, config.params, models)
        except (DeploymentFailed, Exception) as exc:
            # SageMaker rolls back: the old containers keep serving and FailureReason says why.
            log.warning("update of endpoint %s failed: %s", record.name, exc)
            record.set_status("InService", str(exc))
            return
        old, record.deployment = record.deployment, deployment
        record.config_name = config.name
        record.failure_reason = None
        await self._attach_async_queue(record, config)
        record.set_status("InService")
        if old is not None:
            await stop_deployment(self.platform, old)

    async def update_endpoint_weights_and_capacities(self, params: dict[str, Any]) -> dict[str, Any]:
        """UpdateEndpointWeightsAndCapacities: Updating while instances start or stop, then InService with the
        new weights (docs/harness.md "Control plane")."""
        record = self._endpoint(params["EndpointName"])
        if record.status != "InService" or record.deployment is None:
            raise ControlPlaneError(f'Cannot update in-progress endpoint "{record.arn}".')
        if record.deployment.hosts:
            raise ControlPlaneError("UpdateEndpointWeightsAndCapacities of an endpoint with inference components is "
                                    "not supported by the local harness.")
        changes = _desired_changes(record.arn, record.deployment, params["DesiredWeightsAndCapacities"])
        for variant, change in changes:
            variant.desired_weight = float(change.get("DesiredWeight", variant.weight))
            variant.desired_count = int(change.get("DesiredInstanceCount", len(variant.instances)))
        record.set_status("Updating")
        record.task = asyncio.create_task(self._apply_weights_and_capacities(record, [v for v, _ in changes]))
        return {"EndpointArn": record.arn}

    async def _apply_weights_and_capacities(self, record: EndpointRecord, variants: list[VariantDeployment]) -> None:
        try:
            for variant in variants:
                await scale_variant(self.platform, record.name, variant, variant.desired_count)
        except Exception as exc:
            # As for UpdateEndpoint: what runs keeps serving, with its weights, and FailureReason says why.
            log.warning("updating weights and capacities of endpoint %s failed: %s", record.name, exc)
            for variant in variants:
                variant.desired_weight, variant.desired_count = variant.weight, len(variant.instances)
            record.set_status("InService", str(exc))
            return
        for variant in variants:
            variant.weight = variant.desired_weight
        record.failure_reason = None
        record.set_status("InService")

    # -- batch transform (harness.transform) ------------------------------------------------------------------
    def _transform_job(self, name: str) -> TransformJobRecord:
        record = self.store.transform_jobs.get(name.lower())
        if record is None:
            # The transform_job_completed_or_stopped waiter fails on exactly this error code.
            raise ControlPlaneError(f"Could not find requested job with name {name}")
        return record

    async def create_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        """CreateTransformJob: answers at once (InProgress); the job runs in the background."""
        name = params["TransformJobName"]
        job_arn = self._arn("transform-job", name)
        if name.lower() in self.store.transform_jobs:
            raise ControlPlaneError(
                f"Job name must be unique within an AWS account and region, and a job with this name already "
                f"exists ({job_arn})"
            )
        model = self._model(params["ModelName"])
        try:
            processing = check_request(params, model)
        except ValueError as exc:
            raise ControlPlaneError(f"{exc}.") from None
        record = TransformJobRecord(name=name, arn=job_arn, created=time.time(), params=params,
                                    tags=tags.merged({}, params.get("Tags") or [], job_arn))
        self.store.transform_jobs[name.lower()] = record
        record.task = asyncio.create_task(run_transform_job(self.platform, self.router, record, model, processing))
        return {"TransformJobArn": job_arn}

    async def describe_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeTransformJob: the request as given, status, times and the execution parameters used."""
        record = self._transform_job(params["TransformJobName"])
        out: dict[str, Any] = {"TransformJobName": record.name, "TransformJobArn": record.arn,
                               "TransformJobStatus": record.status, "CreationTime": record.created}
        for key in ("ModelName", "MaxConcurrentTransforms", "ModelClientConfig", "MaxPayloadInMB", "BatchStrategy",
                    "Environment", "TransformInput", "TransformOutput", "TransformResources", "DataProcessing",
                    "ExperimentConfig"):
            if key in record.params:
                out[key] = record.params[key]
        out.update(record.resolved)
        for key, value in (("FailureReason", record.failure_reason), ("TransformStartTime", record.started),
                           ("TransformEndTime", record.ended)):
            if value is not None:
                out[key] = value
        return out

    async def list_transform_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListTransformJobs with StatusEquals, NameContains, time filters, sorting and paging."""
        records = list(self.store.transform_jobs.values())
        if params.get("StatusEquals"):
            records = [r for r in records if r.status == params["StatusEquals"]]
        if params.get("LastModifiedTimeBefore") is not None:
            records = [r for r in records if r.modified < float(params["LastModifiedTimeBefore"])]
        if params.get("LastModifiedTimeAfter") is not None:
            records = [r for r in records if r.modified > float(params["LastModifiedTimeAfter"])]
        items = []
        for r in _filter_sort(records, params):
            item = {"TransformJobName": r.name, "TransformJobArn": r.arn, "CreationTime": r.created,
                    "LastModifiedTime": r.modified, "TransformJobStatus": r.status}
            item.update({k: v for k, v in (("TransformEndTime", r.ended), ("FailureReason", r.failure_reason))
                         if v is not None})
            items.append(item)
        return _paginate(items, params, "TransformJobSummaries")

    async def stop_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        """StopTransformJob: Stopping while its containers stop, then Stopped."""
        record = self._transform_job(params["TransformJobName"])
        if record.status in ("Completed", "Failed"):
            raise ControlPlaneError(f"Transform job {record.name} has already ended ({record.status}) and cannot "
                                    "be stopped.")
        if record.status == "InProgress" and record.task is not None:
            record.set_status("Stopping")
            record.task.cancel()
        return {}

    # -- inference components (harness.inference_components) -----------------------------------------------------
    def _component(self, name: str) -> InferenceComponentRecord:
        record = self.store.inference_components.get(name.lower())
        if record is None:
            raise ControlPlaneError(
                f'Could not find inference component "{self._arn("inference-component", name)}".')
        return record

    def _host_deployment(self, endpoint: EndpointRecord) -> Deployment:
        """The running deployment of an endpoint whose variants host inference components."""
        deployment = endpoint.deployment
        if endpoint.status not in ("InService", "Updating") or deployment is None:
            raise ControlPlaneError(f'Endpoint "{endpoint.arn}" is not in service; inference components can be '
                                    "created on an endpoint in service only.")
        if not deployment.hosts:
            raise ControlPlaneError(f'Endpoint "{endpoint.arn}" has no variant for inference components (its '
                                    "variants name models).")
        return deployment

    async def _until_hosts_started(self, endpoint: EndpointRecord) -> None:
        """An endpoint for inference components starts no container, so while it is Creating the request waits for
        it (a moment): the SDK v2 creates the component right after CreateEndpoint (docs/harness.md "Inference
        components")."""
        config = self.store.configs.get(endpoint.config_name.lower())
        hosts = config is not None and any(not v.get("ModelName") for v in config.variants)
        if endpoint.status == "Creating" and hosts and endpoint.task is not None:
            await asyncio.shield(endpoint.task)

    @staticmethod
    def _host_name(endpoint: EndpointRecord, deployment: Deployment, variant: str | None) -> str:
        if variant is None and len(deployment.hosts) == 1:
            return deployment.hosts[0].name
        if variant is None or deployment.host(variant) is None:
            raise ControlPlaneError(f'VariantName must name one of the variants of endpoint "{endpoint.arn}": '
                                    f"{', '.join(h.name for h in deployment.hosts)}.")
        return variant

    async def _component_model(self, name: str, spec: dict[str, Any]) -> ModelRecord:
        """The model a component's copies run: ModelName, or Container as a one-container model."""
        try:
            components.check_specification(name, spec)
            if spec.get("ModelName"):
                model = self._model(spec["ModelName"])
                components.check_model(name, model)
                return model
        except ValueError as exc:
            raise ControlPlaneError(f"{exc}.") from None
        container = spec["Container"]
        definition = await self._container_def({"Image": container.get("Image"),
                                                "ModelDataUrl": container.get("ArtifactUrl"),
                                                "Environment": container.get("Environment")}, 0, 1, "Single")
        return ModelRecord(name=name, arn=self._arn("inference-component", name), created=time.time(), params={},
                           containers=[definition], mode="Single")

    def _check_fits(self, deployment: Deployment, record: InferenceComponentRecord, spec: dict[str, Any],
                    copies: int) -> None:
        host = deployment.host(record.variant_name)
        assert host is not None
        placed = components.placed_elsewhere(deployment, host.name, list(self.store.inference_components.values()),
                                             but=record.name)
        try:
            components.check_fits(host, placed, record.name, components.reservation(spec), copies)
        except ValueError as exc:
            raise ControlPlaneError(f"{exc}.") from None

    async def create_inference_component(self, params: dict[str, Any]) -> dict[str, Any]:
        """CreateInferenceComponent: answers at once with Creating; the copies start in the background."""
        name = params["InferenceComponentName"]
        component_arn = self._arn("inference-component", name)
        if name.lower() in self.store.inference_components:
            raise ControlPlaneError(f'Cannot create already existing inference component "{component_arn}".')
        if params.get("Specifications") or not params.get("Specification"):
            raise ControlPlaneError("Specification must be specified (Specifications, one per instance type, is not "
                                    "supported by the local harness).")
        if not params.get("RuntimeConfig"):
            raise ControlPlaneError("RuntimeConfig must be specified for an inference component.")
        if int(params["RuntimeConfig"]["CopyCount"]) < 1:  # SageMaker's wording, as reported: sagemaker-contract §14
            raise ControlPlaneError("Inference components copy count an integer larger than 0")
        endpoint = self._endpoint(params["EndpointName"])
        await self._until_hosts_started(endpoint)
        deployment = self._host_deployment(endpoint)
        spec = params["Specification"]
        model = await self._component_model(name, spec)
        record = InferenceComponentRecord(
            name=name, arn=component_arn, endpoint_name=endpoint.name, endpoint_arn=endpoint.arn,
            variant_name=self._host_name(endpoint, deployment, params.get("VariantName")), created=time.time(),
            specification=spec, copy_count=int(params["RuntimeConfig"]["CopyCount"]),
            tags=tags.merged({}, params.get("Tags") or [], component_arn))
        self._check_fits(deployment, record, spec, record.copy_count)
        self.store.inference_components[name.lower()] = record
        record.task = asyncio.create_task(self._start_component(record, deployment, model))
        return {"InferenceComponentArn": component_arn}

    async def _start_component(self, record: InferenceComponentRecord, deployment: Deployment,
                               model: ModelRecord) -> None:
        running = components.plan_copies(self.platform, deployment, record, model)
        try:
            await start_copies(self.platform, running, deployment.endpoint, record.copy_count,
                               components.download_timeout(record.specification))
        except Exception as exc:  # DeploymentFailed, or a harness defect: either ends in a visible state
            log.warning("inference component %s failed: %s", record.name, exc)
            record.set_status("Failed", str(exc))
            return
        deployment.components[record.name.lower()] = running
        record.failure_reason = None
        record.set_status("InService")

    def _running_component(self, record: InferenceComponentRecord) -> tuple[Deployment | None,
                                                                             VariantDeployment | None]:
        endpoint = self.store.endpoints.get(record.endpoint_name.lower())
        deployment = endpoint.deployment if endpoint is not None else None
        return deployment, (deployment.components.get(record.name.lower()) if deployment is not None else None)

    async def describe_inference_component(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeInferenceComponent: status, FailureReason, Specification as given, desired and current copies."""
        record = self._component(params["InferenceComponentName"])
        return components.describe(record, self._running_component(record)[1])

    async def list_inference_components(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListInferenceComponents with the endpoint, variant, status, name and time filters, sorting and paging."""
        records = list(self.store.inference_components.values())
        for key, attr in (("EndpointNameEquals", "endpoint_name"), ("VariantNameEquals", "variant_name"),
                          ("StatusEquals", "status")):
            if params.get(key):
                records = [r for r in records if getattr(r, attr) == params[key]]
        if params.get("LastModifiedTimeBefore") is not None:
            records = [r for r in records if r.modified < float(params["LastModifiedTimeBefore"])]
        if params.get("LastModifiedTimeAfter") is not None:
            records = [r for r in records if r.modified > float(params["LastModifiedTimeAfter"])]
        items = [{"InferenceComponentName": r.name, "InferenceComponentArn": r.arn, "EndpointName": r.endpoint_name,
                  "EndpointArn": r.endpoint_arn, "VariantName": r.variant_name, "InferenceComponentStatus": r.status,
                  "CreationTime": r.created, "LastModifiedTime": r.modified} for r in _filter_sort(records, params)]
        return _paginate(items, params, "InferenceComponents")

    @staticmethod
    async def _cancel(task: asyncio.Task[None] | None) -> None:
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def delete_inference_component(self, params: dict[str, Any]) -> dict[str, Any]:
        """DeleteInferenceComponent: Deleting while its copies stop, then gone."""
        record = self._component(params["InferenceComponentName"])
        if record.status == "Deleting":
            return {}
        record.set_status("Deleting")
        task = asyncio.create_task(self._remove_component(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return {}

    async def _remove_component(self, record: InferenceComponentRecord) -> None:
        await self._cancel(record.task)
        deployment, running = self._running_component(record)
        if deployment is not None and running is not None:
            del deployment.components[record.name.lower()]  # out of the rotation first, then stopped
            await stop_variant(self.platform, deployment.endpoint, running)
        if self.store.inference_components.get(record.name.lower()) is record:
            del self.store.inference_components[record.name.lower()]

    async def update_inference_component_runtime_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """UpdateInferenceComponentRuntimeConfig: Updating while copies start (joining once healthy) or stop (leaving
        the rotation first), then InService."""
        record = self._component(params["InferenceComponentName"])
        deployment, running = self._running_component(record)
        if record.status != "InService" or deployment is None or running is None:
            raise ControlPlaneError(f'Cannot update in-progress inference component "{record.arn}".')
        count = int(params["DesiredRuntimeConfig"]["CopyCount"])
        self._check_fits(deployment, record, record.specification, count)
        previous, record.copy_count = record.copy_count, count
        record.set_status("Updating")
        record.task = asyncio.create_task(self._scale_component(record, deployment.endpoint, running, previous))
        return {"InferenceComponentArn": record.arn}

    async def _scale_component(self, record: InferenceComponentRecord, endpoint: str, running: VariantDeployment,
                               previous: int) -> None:
        try:
            await scale_variant(self.platform, endpoint, running, record.copy_count)
        except Exception as exc:  # the copies running keep serving; FailureReason says why (as UpdateEndpoint)
            log.warning("updating inference component %s failed: %s", record.name, exc)
            record.copy_count = previous
            record.set_status("InService", str(exc))
            return
        record.failure_reason = None
        record.set_status("InService")

    async def update_inference_component(self, params: dict[str, Any]) -> dict[str, Any]:
        """UpdateInferenceComponent: a new Specification replaces every copy (new copies start and pass the health
        check, then take the traffic, then the old ones stop); a RuntimeConfig alone changes the copy count."""
        for key in ("Specifications", "DeploymentConfig"):
            if params.get(key):
                raise ControlPlaneError(f"{key} is not supported by the local harness (a new Specification replaces "
                                        "all copies at once once the new ones are healthy).")
        record = self._component(params["InferenceComponentName"])
        deployment, running = self._running_component(record)
        if record.status != "InService" or deployment is None or running is None:
            raise ControlPlaneError(f'Cannot update in-progress inference component "{record.arn}".')
        if not params.get("Specification"):
            return await self.update_inference_component_runtime_config(
                {"InferenceComponentName": record.name, "DesiredRuntimeConfig": params.get("RuntimeConfig")
                 or {"CopyCount": record.copy_count}})
        wanted = dataclasses.replace(record, specification=params["Specification"], task=None,
                                     copy_count=int((params.get("RuntimeConfig") or {}).get("CopyCount")
                                                    or record.copy_count))
        model = await self._component_model(record.name, wanted.specification)
        self._check_fits(deployment, record, wanted.specification, wanted.copy_count)
        record.set_status("Updating")
        record.task = asyncio.create_task(self._replace_copies(record, wanted, deployment, model))
        return {"InferenceComponentArn": record.arn}

    async def _replace_copies(self, record: InferenceComponentRecord, wanted: InferenceComponentRecord,
                              deployment: Deployment, model: ModelRecord) -> None:
        new = components.plan_copies(self.platform, deployment, wanted, model)
        try:
            await start_copies(self.platform, new, deployment.endpoint, wanted.copy_count,
                               components.download_timeout(wanted.specification))
        except Exception as exc:  # the old copies keep serving; FailureReason says why (as UpdateEndpoint)
            log.warning("updating inference component %s failed: %s", record.name, exc)
            record.set_status("InService", str(exc))
            return
        old = deployment.components.get(record.name.lower())
        deployment.components[record.name.lower()] = new
        record.specification, record.copy_count, record.failure_reason = wanted.specification, wanted.copy_count, None
        record.set_status("InService")
        if old is not None:
            await stop_variant(self.platform, deployment.endpoint, old)

    # -- tags (harness.tags) -----------------------------------------------------------------------------
    async def add_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        """AddTags: add or overwrite; answers with the tags given."""
        record = tags.record_for_arn(self.store, params["ResourceArn"])
        record.tags = tags.merged(record.tags, params["Tags"], record.arn)
        return {"Tags": params["Tags"]}

    async def list_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListTags, paged by MaxResults (at least 50, the default) and NextToken."""
        record = tags.record_for_arn(self.store, params["ResourceArn"])
        return _paginate(tags.as_list(record.tags), params, "Tags", default_limit=tags.MAX_TAGS_PER_RESOURCE)

    async def delete_tags(self, params: dict[str, Any]) -> dict[str, Any]:
        """DeleteTags: keys the resource does not have are ignored."""
        record = tags.record_for_arn(self.store, params["ResourceArn"])
        tags.check_keys(params["TagKeys"])
        removed = set(params["TagKeys"])
        record.tags = {k: v for k, v in record.tags.items() if k not in removed}
        return {}
