"""InvokeEndpoint: route one request to the right container(s) and shape the answer (contract §2-5).

* single model: ``POST /invocations`` on the instance's only container;
* MME: TargetModel -> the container's model cache (harness.mme) -> ``POST /models/<name>/invoke``;
* Direct multi-container: ``TargetContainerHostname`` picks the container;
* Serial pipeline: container i's response body and Content-Type become container i+1's request;
  the client's Accept goes to the last container only.

Only Content-Type, Accept and X-Amzn-SageMaker-Custom-Attributes (plus Target-Model for MME) reach a
container. A container's 4xx/5xx becomes ModelError (424) naming ``primary`` or its hostname.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from harness.errors import (
    ACCOUNT_ID,
    ModelError,
    ValidationError,
    log_group_arn,
    model_error,
)
from harness.validation import format_errors, operation_model, validation_errors

if TYPE_CHECKING:
    from harness.core import Platform
    from harness.deployment import ContainerRuntime, Deployment, VariantDeployment

# InvokeEndpoint request headers -> input members, for validation against botocore's model.
HEADER_MEMBERS = {
    "content-type": "ContentType",
    "accept": "Accept",
    "x-amzn-sagemaker-custom-attributes": "CustomAttributes",
    "x-amzn-sagemaker-target-model": "TargetModel",
    "x-amzn-sagemaker-target-variant": "TargetVariant",
    "x-amzn-sagemaker-target-container-hostname": "TargetContainerHostname",
    "x-amzn-sagemaker-inference-id": "InferenceId",
    "x-amzn-sagemaker-enable-explanations": "EnableExplanations",
    "x-amzn-sagemaker-inference-component": "InferenceComponentName",
    "x-amzn-sagemaker-session-id": "SessionId",
}


@dataclass
class Invocation:
    """One InvokeEndpoint request as received."""

    endpoint: str
    body: bytes
    members: dict[str, str]  # HEADER_MEMBERS values present in the request
    request_id: str

    @property
    def content_type(self) -> str | None:
        return self.members.get("ContentType")

    @property
    def accept(self) -> str | None:
        return self.members.get("Accept")

    @property
    def custom_attributes(self) -> str | None:
        return self.members.get("CustomAttributes")

    @property
    def target_model(self) -> str | None:
        return self.members.get("TargetModel")

    @property
    def target_container(self) -> str | None:
        return self.members.get("TargetContainerHostname")


@dataclass
class Answer:
    """A successful invocation's response."""

    body: bytes
    content_type: str
    variant: str
    custom_attributes: str | None


@dataclass
class _Hop:
    status: int
    body: bytes
    content_type: str | None
    custom_attributes: str | None
    latency_us: float


def parse_invocation(endpoint: str, headers: dict[str, str], body: bytes) -> Invocation:
    """Collect the InvokeEndpoint members from the request and validate them like the service."""
    members = {member: headers[h] for h, member in HEADER_MEMBERS.items() if h in headers}
    invocation = Invocation(endpoint=endpoint, body=body, members=members, request_id=str(uuid.uuid4()))
    operation = operation_model("sagemaker-runtime", "InvokeEndpoint")
    if operation is not None and operation.input_shape is not None:
        # Body is checked later, with a message that names the 6 MiB limit.
        values: dict[str, object] = {"EndpointName": endpoint, "Body": b"", **members}
        errors = validation_errors(operation.input_shape, values)
        if errors:
            raise ValidationError(format_errors(errors))
    return invocation


class Router:
    """Routes invocations of one platform's endpoints."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    # -- container calls -------------------------------------------------------------------------------
    async def _call(self, endpoint: str, container: ContainerRuntime, path: str, body: bytes,
                    content_type: str | None, accept: str | None, custom_attributes: str | None,
                    target_model: str | None = None) -> _Hop:
        headers = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if accept is not None:
            headers["Accept"] = accept
        if custom_attributes is not None:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
        if target_model is not None:
            headers["X-Amzn-SageMaker-Target-Model"] = target_model
        config = self.platform.config
        started = time.perf_counter()
        try:
            response = await self.platform.client.post(
                f"{container.running.base_url}{path}", content=body, headers=headers,
                timeout=httpx.Timeout(config.invocation_timeout_s, connect=config.connect_timeout_s),
            )
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise self._unreachable(endpoint, container, exc) from None
            raise model_error(
                config.region, endpoint, container.label, 0,
                f"Your invocation timed out while waiting for a response from container {container.label}. "
                "Review the latency metrics for each container in Amazon CloudWatch, resolve the issue, "
                "and try again.",
            ) from None
        except httpx.HTTPError as exc:
            raise self._unreachable(endpoint, container, exc) from None
        return _Hop(
            status=response.status_code,
            body=response.content,
            content_type=response.headers.get("content-type"),
            custom_attributes=response.headers.get("x-amzn-sagemaker-custom-attributes"),
            latency_us=(time.perf_counter() - started) * 1e6,
        )

    def _unreachable(self, endpoint: str, container: ContainerRuntime, exc: Exception) -> ModelError:
        code = container.running.exit_code()
        detail = f"it exited with code {code}" if code is not None else (str(exc) or type(exc).__name__)
        return model_error(self.platform.config.region, endpoint, container.label, 0,
                           f"Could not reach container {container.label}: {detail}")

    async def _invoke_container(self, endpoint: str, variant: VariantDeployment, container: ContainerRuntime,
                                invocation_body: bytes, content_type: str | None, accept: str | None,
                                custom_attributes: str | None, target_model: str | None) -> _Hop:
        """One container, single model or MME; raises ModelError for a 4xx/5xx answer."""
        if container.cache is None:
            hop = await self._call(endpoint, container, "/invocations", invocation_body, content_type, accept,
                                   custom_attributes)
        else:
            assert target_model is not None
            hop = await self._invoke_mme(endpoint, container, invocation_body, content_type, accept,
                                         custom_attributes, target_model)
        self.platform.metrics.record(endpoint, variant.name, "ContainerLatency", hop.latency_us, container.hostname)
        if hop.status >= 400:
            raise model_error(self.platform.config.region, endpoint, container.label, hop.status,
                              hop.body.decode("utf-8", errors="replace"))
        return hop

    async def _invoke_mme(self, endpoint: str, container: ContainerRuntime, body: bytes, content_type: str | None,
                          accept: str | None, custom_attributes: str | None, target_model: str) -> _Hop:
        cache = container.cache
        assert cache is not None
        for attempt in range(2):
            name = await cache.acquire(target_model)
            try:
                hop = await self._call(endpoint, container, f"/models/{name}/invoke", body, content_type, accept,
                                       custom_attributes, target_model)
            finally:
                await cache.release(name)
            if hop.status == 404 and attempt == 0:
                cache.forget(name)  # the container lost it (restart, own eviction): load again once
                continue
            return hop
        return hop

    # -- the entry point ---------------------------------------------------------------------------------
    async def invoke(self, deployment: Deployment, invocation: Invocation) -> Answer:
        """Route ``invocation`` through ``deployment``; raises RuntimeApiError subclasses."""
        endpoint = invocation.endpoint
        target_variant = invocation.members.get("TargetVariant")
        if target_variant is not None:
            variant = deployment.variant(target_variant)
            if variant is None:
                raise ValidationError(
                    f"The variant {target_variant} does not exist for endpoint {endpoint} of account {ACCOUNT_ID}."
                )
        else:
            variant = deployment.pick_variant()
        model = variant.model
        mme = [c for c in model.containers if c.multi_model]
        target_model = invocation.target_model
        if mme and target_model is None:
            raise ValidationError(f"Request {invocation.request_id} is missing a target model header.",
                                  ErrorCode="TARGET_MODEL_HEADER_MISSING")
        if not mme and target_model is not None:
            raise ValidationError(
                f"Endpoint {endpoint} is not a multi-model endpoint and does not support target model header.",
                ErrorCode="TARGET_MODEL_HEADER_NOT_SUPPORTED",
            )
        target_container = invocation.target_container
        if model.mode == "Direct" and target_container is None:
            raise ValidationError(
                f"Endpoint {endpoint} is configured for direct invocation; the request must name a container "
                f"with TargetContainerHostname (one of: {', '.join(c.hostname for c in model.containers)})."
            )
        if model.mode != "Direct" and target_container is not None:
            raise ValidationError(
                f"Endpoint {endpoint} is not configured for direct invocation (its inference execution mode is "
                f"{'Serial' if model.mode == 'Serial' else 'a single container'}); "
                "TargetContainerHostname is not supported."
            )
        if len(invocation.body) > self.platform.config.max_payload_bytes:
            raise ValidationError(
                f"Request {invocation.request_id} has oversize body: {len(invocation.body)} bytes exceeds the "
                f"{self.platform.config.max_payload_bytes}-byte (6 MiB) limit for real-time inference."
            )

        metrics = self.platform.metrics
        metrics.record(endpoint, variant.name, "Invocations", 1.0)
        try:
            answer = await self._route(invocation, variant, bool(mme), target_model, target_container)
        except ModelError as error:
            # CloudWatch semantics: one 0/1 sample per request, so Sum counts errors and Average is a rate.
            status = int(error.members.get("OriginalStatusCode") or 0)
            client_error = 1.0 if 400 <= status < 500 else 0.0
            metrics.record(endpoint, variant.name, "Invocation4XXErrors", client_error)
            metrics.record(endpoint, variant.name, "Invocation5XXErrors", 1.0 - client_error)
            raise
        metrics.record(endpoint, variant.name, "Invocation4XXErrors", 0.0)
        metrics.record(endpoint, variant.name, "Invocation5XXErrors", 0.0)
        return answer

    async def _route(self, invocation: Invocation, variant: VariantDeployment, mme: bool,
                     target_model: str | None, target_container: str | None) -> Answer:
        """Send the invocation through the variant's containers (single, MME, Direct or Serial)."""
        endpoint = invocation.endpoint
        model = variant.model
        instance = variant.pick_instance(target_model if mme else None)
        metrics = self.platform.metrics
        started = time.perf_counter()
        model_latency = 0.0
        if model.mode == "Direct":
            assert target_container is not None
            container = instance.container(target_container)
            if container is None:
                raise ValidationError(
                    f"Container {target_container} does not exist in endpoint {endpoint}; use one of: "
                    f"{', '.join(c.hostname for c in instance.containers)}."
                )
            hop = await self._invoke_container(endpoint, variant, container, invocation.body,
                                               invocation.content_type, invocation.accept,
                                               invocation.custom_attributes,
                                               target_model if container.cache else None)
            model_latency = hop.latency_us
            answering = container.label
            final = hop
        else:
            # Single model (one container) or serial pipeline (several, in list order).
            body, content_type = invocation.body, invocation.content_type
            step: _Hop | None = None
            containers = instance.containers
            for index, container in enumerate(containers):
                last = index == len(containers) - 1
                accept = invocation.accept if last else self.platform.config.pipeline_intermediate_accept
                step = await self._invoke_container(endpoint, variant, container, body, content_type, accept,
                                                    invocation.custom_attributes,
                                                    target_model if container.cache else None)
                model_latency += step.latency_us
                if not last and len(step.body) > self.platform.config.pipeline_payload_bytes:
                    following = containers[index + 1]
                    message = (
                        f"Received response from {container.hostname} with status code {step.status}. However, "
                        f"the request payload from {container.hostname} to {following.hostname} is "
                        f"{len(step.body)} bytes, which has exceeded the maximum limit of 5 MB."
                    )
                    raise ModelError(message, OriginalStatusCode=step.status, OriginalMessage=message,
                                     LogStreamArn=_log_arn(self.platform, endpoint))
                body, content_type = step.body, step.content_type
            assert step is not None
            answering = containers[-1].label
            final = step
        total = (time.perf_counter() - started) * 1e6
        metrics.record(endpoint, variant.name, "ModelLatency", model_latency)
        metrics.record(endpoint, variant.name, "OverheadLatency", max(total - model_latency, 0.0))
        if len(final.body) > self.platform.config.max_payload_bytes:
            message = (
                f"Received response from {answering} with status code {final.status}. "
                f"However, the response payload of {len(final.body)} bytes exceeds the maximum limit of 6 MB."
            )
            raise ModelError(message, OriginalStatusCode=final.status, OriginalMessage=message,
                             LogStreamArn=_log_arn(self.platform, endpoint))
        return Answer(
            body=final.body,
            content_type=final.content_type or "application/octet-stream",
            variant=variant.name,
            custom_attributes=final.custom_attributes,
        )


def _log_arn(platform: Platform, endpoint: str) -> str:
    return log_group_arn(platform.config.region, endpoint)
