"""InvokeEndpoint: route one request to the right container(s) and shape the answer (docs/sagemaker-contract.md §2-§5).

* single model: ``POST /invocations`` on the instance's only container;
* MME: TargetModel -> the container's model cache (harness.mme) -> ``POST /models/<name>/invoke``;
* Direct multi-container: ``TargetContainerHostname`` picks the container;
* Serial pipeline: container i's response body and Content-Type become container i+1's request;
  the client's Accept goes to the last container only.

Only Content-Type, Accept and X-Amzn-SageMaker-Custom-Attributes (plus Target-Model for MME) reach a
container. A container's 4xx/5xx becomes ModelError (424) naming ``primary`` or its hostname.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace

from harness.container_client import ContainerReply, OutgoingRequest
from harness.core import Platform
from harness.data_capture import Exchange
from harness.errors import (
    ACCOUNT_ID,
    ModelError,
    RuntimeApiError,
    ServiceUnavailable,
    ThrottlingError,
    ValidationError,
    log_group_arn,
)
from harness.running import ContainerRuntime, Deployment, Instance, VariantDeployment
from harness.state import ModelRecord
from harness.validation import format_errors, operation_model, validation_errors

log = logging.getLogger("harness")

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


@dataclass(frozen=True)
class Invocation:
    """One InvokeEndpoint request as received (the members the harness acts on)."""

    endpoint: str
    request_id: str
    body: bytes
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    target_model: str | None = None
    target_variant: str | None = None
    target_container: str | None = None
    inference_id: str | None = None
    timeout_s: float | None = None  # per container; None: HarnessConfig.invocation_timeout_s
    inference_component: str | None = None

    def outgoing(self) -> OutgoingRequest:
        """What the first (or only) container is sent."""
        return OutgoingRequest(body=self.body, content_type=self.content_type, accept=self.accept,
                               custom_attributes=self.custom_attributes, target_model=self.target_model,
                               timeout_s=self.timeout_s)


@dataclass(frozen=True)
class Answer:
    """A successful invocation's response."""

    body: bytes
    content_type: str
    variant: str
    custom_attributes: str | None


def parse_invocation(endpoint: str, request_id: str, headers: Mapping[str, str], body: bytes) -> Invocation:
    """Collect the InvokeEndpoint members from the request and validate them like the service."""
    lowered = {name.lower(): value for name, value in headers.items()}
    members = {member: lowered[h] for h, member in HEADER_MEMBERS.items() if h in lowered}
    operation = operation_model("sagemaker-runtime", "InvokeEndpoint")
    if operation is not None and operation.input_shape is not None:
        # Body is checked later, with a message that names the 6 MiB limit.
        values: dict[str, object] = {"EndpointName": endpoint, "Body": b"", **members}
        errors = validation_errors(operation.input_shape, values)
        if errors:
            raise ValidationError(format_errors(errors))
    return Invocation(
        endpoint=endpoint, request_id=request_id, body=body,
        content_type=members.get("ContentType"), accept=members.get("Accept"),
        custom_attributes=members.get("CustomAttributes"), target_model=members.get("TargetModel"),
        target_variant=members.get("TargetVariant"), target_container=members.get("TargetContainerHostname"),
        inference_id=members.get("InferenceId"), inference_component=members.get("InferenceComponentName"),
    )


def component_copies(deployment: Deployment, invocation: Invocation) -> VariantDeployment:
    """The copies of the inference component the request names (their metrics are kept under its name); the
    refusals' wording is the harness's (docs/harness.md "Inference components")."""
    endpoint, name = invocation.endpoint, invocation.inference_component
    if not deployment.hosts:
        raise ValidationError(f"Endpoint {endpoint} has no inference components; InferenceComponentName is not "
                              "supported for it.")
    if name is None:
        raise ValidationError(f"Endpoint {endpoint} hosts inference components; the request must name one with "
                              "InferenceComponentName.")
    if invocation.target_variant is not None:
        raise ValidationError("TargetVariant is not supported with InferenceComponentName.")
    running = deployment.components.get(name.lower())
    if running is None:
        raise ValidationError(f"Inference component {name} does not exist or is not in service on endpoint "
                              f"{endpoint}.")
    if not running.instances:
        raise ValidationError(f"Inference component {name} of endpoint {endpoint} has no copies.")
    return running


class Router:
    """Routes invocations of one platform's endpoints."""

    def __init__(self, platform: Platform) -> None:
        self.config = platform.config
        self.metrics = platform.metrics
        self.client = platform.container_client

    # -- the entry point ---------------------------------------------------------------------------------
    async def invoke(self, deployment: Deployment, invocation: Invocation) -> Answer:
        """Route ``invocation`` through ``deployment``; raises RuntimeApiError subclasses."""
        variant = self.target(deployment, invocation)
        try:
            async with self.serverless_slot(invocation.endpoint, variant):
                answer = await self._route(invocation, variant)
        except ModelError as error:
            self.record_model_error(invocation.endpoint, variant.name, error)
            raise
        except (ThrottlingError, ServiceUnavailable) as error:  # a serverless variant's refusals
            throttled = isinstance(error, ThrottlingError)
            self.record_outcome(invocation.endpoint, variant.name, client_error=throttled, server_error=not throttled)
            raise
        self.record_outcome(invocation.endpoint, variant.name, client_error=False, server_error=False)
        if variant.host is not None:  # an inference component's copies answer for the variant hosting them
            answer = replace(answer, variant=variant.host)
        if deployment.capture is not None and deployment.capture.sampled():
            deployment.capture.add(Exchange(variant=variant.name, request_type=invocation.content_type,
                                            request=invocation.body, response_type=answer.content_type,
                                            response=answer.body, inference_id=invocation.inference_id))
        return answer

    def target(self, deployment: Deployment, invocation: Invocation) -> VariantDeployment:
        """The variant that answers ``invocation``, once the request is checked against its model; the
        request counts in ``Invocations`` from here on."""
        variant = self._variant(deployment, invocation)
        self._check(invocation, variant.model, serverless=variant.serverless is not None)
        self.metrics.record(invocation.endpoint, variant.name, "Invocations", 1.0)
        self._mirror(deployment, invocation)
        return variant

    # -- shadow variants ---------------------------------------------------------------------------------
    def _copy_share(self, deployment: Deployment, shadow: VariantDeployment) -> float:
        """The share of production requests ``shadow`` gets a copy of (HarnessConfig.shadow_share_from_weights)."""
        if not self.config.shadow_share_from_weights:
            return 1.0
        production = deployment.variants[0].weight  # ShadowProductionVariants allows one production variant
        return min(shadow.weight / production, 1.0) if production > 0 else 0.0

    def _mirror(self, deployment: Deployment, invocation: Invocation) -> None:
        """Start a copy of ``invocation`` for each shadow variant without waiting for it; a shadow with
        shadow_max_in_flight copies running gets none (ShadowCopiesDropped)."""
        for shadow in deployment.shadows:
            if random.random() >= self._copy_share(deployment, shadow):
                continue
            if len(shadow.copies) >= self.config.shadow_max_in_flight:
                self.metrics.record(invocation.endpoint, shadow.name, "ShadowCopiesDropped", 1.0)
                continue
            task = asyncio.create_task(self._shadow_copy(replace(invocation, target_variant=None), shadow))
            shadow.copies.add(task)
            task.add_done_callback(shadow.copies.discard)

    async def _shadow_copy(self, invocation: Invocation, shadow: VariantDeployment) -> None:
        """One copy through the shadow's containers; the answer is dropped, its metrics kept."""
        endpoint = invocation.endpoint
        try:
            self._check(invocation, shadow.model)
            self.metrics.record(endpoint, shadow.name, "Invocations", 1.0)
            await self._route(invocation, shadow)
        except ModelError as error:
            self.record_model_error(endpoint, shadow.name, error)
            return
        except RuntimeApiError as error:
            log.info("endpoint %s shadow variant %s refused a copy: %s", endpoint, shadow.name, error)
            self.record_outcome(endpoint, shadow.name, client_error=True, server_error=False)
            return
        except Exception:  # a defect must not reach the client, who already has its answer
            log.exception("endpoint %s: the copy for shadow variant %s failed", endpoint, shadow.name)
            self.record_outcome(endpoint, shadow.name, client_error=False, server_error=True)
            return
        self.record_outcome(endpoint, shadow.name, client_error=False, server_error=False)

    @contextlib.asynccontextmanager
    async def serverless_slot(self, endpoint: str, variant: VariantDeployment) -> AsyncIterator[None]:
        """A serverless variant: at most MaxConcurrency requests at once (beyond: ThrottlingException), and a cold
        start (ModelSetupTime) when no instance runs (docs/harness.md "Serverless")."""
        state = variant.serverless
        if state is None:
            yield
            return
        if state.in_flight >= state.max_concurrency:
            raise ThrottlingError(f"Endpoint {endpoint} variant {variant.name} is already processing MaxConcurrency "
                                  f"({state.max_concurrency}) requests; the request was throttled.")
        state.in_flight += 1
        try:
            await self._warm(endpoint, variant)
            yield
        finally:
            state.in_flight -= 1
            state.last_used = time.monotonic()

    async def _warm(self, endpoint: str, variant: VariantDeployment) -> None:
        """Start the serverless variant's instance if it is cold; requests arriving meanwhile wait for it."""
        state = variant.serverless
        assert state is not None
        async with state.starting:
            if variant.instances:
                return
            started = time.perf_counter()
            try:
                await state.cold_start()
            except Exception as exc:
                raise ServiceUnavailable(f"The serverless endpoint {endpoint} could not start its container: "
                                         f"{exc}") from None
            self.metrics.record(endpoint, variant.name, "ModelSetupTime", (time.perf_counter() - started) * 1e6)

    def record_model_error(self, endpoint: str, variant: str, error: ModelError) -> None:
        """A container's 4xx counts as a client error, anything else (5xx, unreachable) as a server error."""
        status = int(error.members.get("OriginalStatusCode") or 0)
        self.record_outcome(endpoint, variant, client_error=400 <= status < 500, server_error=not 400 <= status < 500)

    def record_outcome(self, endpoint: str, variant: str, *, client_error: bool, server_error: bool) -> None:
        # CloudWatch semantics: one 0/1 sample per request, so Sum counts errors and Average is a rate.
        self.metrics.record(endpoint, variant, "Invocation4XXErrors", float(client_error))
        self.metrics.record(endpoint, variant, "Invocation5XXErrors", float(server_error))

    @staticmethod
    def _variant(deployment: Deployment, invocation: Invocation) -> VariantDeployment:
        """The inference component named, TargetVariant when given, else a weighted random pick."""
        if deployment.hosts or invocation.inference_component is not None:
            return component_copies(deployment, invocation)
        if invocation.target_variant is None:
            return deployment.pick_variant()
        variant = deployment.variant(invocation.target_variant)
        if variant is None:
            raise ValidationError(f"The variant {invocation.target_variant} does not exist for endpoint "
                                  f"{invocation.endpoint} of account {ACCOUNT_ID}.")
        return variant

    def _check(self, invocation: Invocation, model: ModelRecord, *, serverless: bool = False) -> None:
        """The request's headers and body must fit the model: MME, Direct, payload limit (serverless's own)."""
        endpoint = invocation.endpoint
        multi_model = any(c.multi_model for c in model.containers)
        if multi_model and invocation.target_model is None:
            raise ValidationError(f"Request {invocation.request_id} is missing a target model header.",
                                  ErrorCode="TARGET_MODEL_HEADER_MISSING")
        if not multi_model and invocation.target_model is not None:
            raise ValidationError(
                f"Endpoint {endpoint} is not a multi-model endpoint and does not support target model header.",
                ErrorCode="TARGET_MODEL_HEADER_NOT_SUPPORTED",
            )
        if model.mode == "Direct" and invocation.target_container is None:
            raise ValidationError(
                f"Endpoint {endpoint} is configured for direct invocation; the request must name a container "
                f"with TargetContainerHostname (one of: {', '.join(c.hostname for c in model.containers)})."
            )
        if model.mode != "Direct" and invocation.target_container is not None:
            raise ValidationError(
                f"Endpoint {endpoint} is not configured for direct invocation (its inference execution mode is "
                f"{'Serial' if model.mode == 'Serial' else 'a single container'}); "
                "TargetContainerHostname is not supported."
            )
        if len(invocation.body) > self.config.max_payload_bytes:
            raise ValidationError(
                f"Request {invocation.request_id} has oversize body: {len(invocation.body)} bytes exceeds the "
                f"{self.config.max_payload_bytes}-byte (6 MiB) limit for real-time inference."
            )
        if serverless and len(invocation.body) > self.config.serverless_max_payload_bytes:
            raise ValidationError(
                f"Request {invocation.request_id} has oversize body: {len(invocation.body)} bytes exceeds the "
                f"{self.config.serverless_max_payload_bytes}-byte (4 MB) limit for serverless inference."
            )

    async def run_model(self, invocation: Invocation, variant: VariantDeployment, instance: Instance) -> ContainerReply:
        """Batch transform and asynchronous inference: ``invocation`` through every container of one
        instance (single model or serial pipeline), without real-time's 6 MiB limits; ModelError on a
        container's 4xx/5xx."""
        return (await self._serial(invocation, variant, instance))[1]

    # -- routing -------------------------------------------------------------------------------------------
    async def _route(self, invocation: Invocation, variant: VariantDeployment) -> Answer:
        """Send the invocation through the variant's containers (single, MME, Direct or Serial)."""
        endpoint = invocation.endpoint
        # Only an MME request has a TargetModel (checked above); it sticks to one instance.
        instance = variant.pick_instance(invocation.target_model)
        started = time.perf_counter()
        with instance.serving():
            if variant.model.mode == "Direct":
                answering, final = await self._direct(invocation, variant, instance)
                model_latency = final.latency_us
            else:
                answering, final, model_latency = await self._serial(invocation, variant, instance)
        total = (time.perf_counter() - started) * 1e6
        self.metrics.record(endpoint, variant.name, "ModelLatency", model_latency)
        self.metrics.record(endpoint, variant.name, "OverheadLatency", max(total - model_latency, 0.0))
        if len(final.body) > self.config.max_payload_bytes:
            message = (
                f"Received response from {answering.label} with status code {final.status}. "
                f"However, the response payload of {len(final.body)} bytes exceeds the maximum limit of 6 MB."
            )
            raise self._limit_error(endpoint, final.status, message)
        return Answer(body=final.body, content_type=final.content_type or "application/octet-stream",
                      variant=variant.name, custom_attributes=final.custom_attributes)

    async def _direct(self, invocation: Invocation, variant: VariantDeployment,
                      instance: Instance) -> tuple[ContainerRuntime, ContainerReply]:
        """Direct multi-container: TargetContainerHostname picks the one container."""
        container = self.direct_container(invocation, instance)
        return container, await self._invoke_container(variant, container, invocation.outgoing())

    @staticmethod
    def direct_container(invocation: Invocation, instance: Instance) -> ContainerRuntime:
        """The container TargetContainerHostname names; ValidationError when there is none by that name."""
        assert invocation.target_container is not None
        container = instance.container(invocation.target_container)
        if container is None:
            raise ValidationError(
                f"Container {invocation.target_container} does not exist in endpoint {invocation.endpoint}; "
                f"use one of: {', '.join(c.hostname for c in instance.containers)}."
            )
        return container

    async def _serial(self, invocation: Invocation, variant: VariantDeployment,
                      instance: Instance) -> tuple[ContainerRuntime, ContainerReply, float]:
        """Single model (one container) or serial pipeline (several, in list order); also their latency."""
        containers = instance.containers
        request = invocation.outgoing()
        model_latency = 0.0
        for index, container in enumerate(containers):
            last = index == len(containers) - 1
            # The client's Accept goes to the last container only (docs/sagemaker-contract.md §4.2).
            accept = invocation.accept if last else self.config.pipeline_intermediate_accept
            reply = await self._invoke_container(variant, container, replace(request, accept=accept))
            model_latency += reply.latency_us
            if last:
                return container, reply, model_latency
            if len(reply.body) > self.config.pipeline_payload_bytes:
                following = containers[index + 1]
                raise self._limit_error(invocation.endpoint, reply.status, (
                    f"Received response from {container.hostname} with status code {reply.status}. However, "
                    f"the request payload from {container.hostname} to {following.hostname} is "
                    f"{len(reply.body)} bytes, which has exceeded the maximum limit of 5 MB."
                ))
            request = replace(request, body=reply.body, content_type=reply.content_type)
        raise AssertionError("a model has at least one container")

    def _limit_error(self, endpoint: str, status: int, message: str) -> ModelError:
        return ModelError(message, OriginalStatusCode=status, OriginalMessage=message,
                          LogStreamArn=log_group_arn(self.config.region, endpoint))

    # -- one container ---------------------------------------------------------------------------------------
    async def _invoke_container(self, variant: VariantDeployment, container: ContainerRuntime,
                                request: OutgoingRequest) -> ContainerReply:
        """One container, single model or MME; raises ModelError for a 4xx/5xx answer."""
        if container.cache is None:
            # Only an MME container is told the TargetModel.
            reply = await self.client.invoke(container, "/invocations", replace(request, target_model=None))
        else:
            reply = await self._invoke_mme(container, request)
        self.metrics.record(container.endpoint, variant.name, "ContainerLatency", reply.latency_us,
                            container.hostname)
        if reply.status >= 400:
            raise self.client.rejected(container, reply.status, reply.text)
        return reply

    async def _invoke_mme(self, container: ContainerRuntime, request: OutgoingRequest) -> ContainerReply:
        cache = container.cache
        assert cache is not None and request.target_model is not None
        for attempt in range(2):
            name = await cache.acquire(request.target_model)
            try:
                reply = await self.client.invoke(container, f"/models/{name}/invoke", request)
            finally:
                await cache.release(name)
            if reply.status == 404 and attempt == 0:
                cache.forget(name)  # the container lost it (restart, own eviction): load again once
                continue
            return reply
        return reply
