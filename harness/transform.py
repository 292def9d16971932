"""Batch transform jobs: the model's containers over S3 input, results assembled back into S3.

What SageMaker does (docs/sagemaker-contract.md §9 "Batch transform"; CreateTransformJob API reference)
and so does this module:

1. start the model's containers (one instance per ``TransformResources.InstanceCount``) with
   ``SAGEMAKER_BATCH=true``, plus ``SAGEMAKER_MAX_PAYLOAD_IN_MB``, ``SAGEMAKER_BATCH_STRATEGY`` and
   ``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS`` for the values the job sets, and wait for ``/ping``;
2. when MaxConcurrentTransforms, BatchStrategy or MaxPayloadInMB is unset, ask the (first) container
   ``GET /execution-parameters``; what it does not say, and every value when it answers 404 or not at
   all, is SageMaker's default (1, MultiRecord, 6);
3. for each input object: read it as a stream, split it into records, filter them, pack them into
   mini-batches, post up to MaxConcurrentTransforms of them per instance at once to ``/invocations``
   (through every container of a serial pipeline), retry a failed one up to
   ``ModelClientConfig.InvocationsMaxRetries`` times, join and filter the answers and write them in
   input order to ``<S3OutputPath>/<relative key>.out``;
4. an object whose mini-batch still fails gets no output and fails the job (``FailureReason`` names
   the object and the container's answer); the other objects are still transformed.

Container logs go to ``<state dir>/logs/_transform-jobs/<job>/`` (``_`` is in no endpoint name, so the
directory never meets an endpoint's) as streams ``<job>/<instance-id>``, and
the job's own progress and errors to the stream ``<job>/data-log`` (SageMaker's names).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import secrets
import shutil
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core import Platform, safe_name
from harness.deployment import DeploymentFailed, start_variant, stop_deployment
from harness.errors import ModelError
from harness.running import Deployment, Instance, VariantDeployment
from harness.runtime import Invocation, Router
from harness.s3_objects import InputObject, S3InputError, S3Objects, output_uri
from harness.state import ModelRecord, TransformJobRecord
from harness.transform_records import (
    DataProcessing,
    RecordError,
    assemble,
    data_processing,
    mini_batches,
    payload,
    split_lines,
    whole_object,
)

log = logging.getLogger("harness")

#: SageMaker's values when neither the job nor the container's GET /execution-parameters sets them.
DEFAULTS: dict[str, Any] = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 6}
#: BatchStrategy as the API spells it -> as the container's environment and /execution-parameters do.
STRATEGY_NAMES = {"MultiRecord": "MULTI_RECORD", "SingleRecord": "SINGLE_RECORD"}
#: ModelClientConfig defaults (API reference): 600 s per invocation, 3 retries.
DEFAULT_INVOCATION_TIMEOUT_S = 600.0
DEFAULT_MAX_RETRIES = 3
#: Upper bounds the API reference states in prose (the service model has only minimums).
MAX_CONCURRENT_TRANSFORMS = 100
MAX_PAYLOAD_MB = 100  # also the bound on MaxConcurrentTransforms * MaxPayloadInMB
MB = 2**20
FAILURE_REASON_LENGTH = 1024


class TransformFailed(Exception):
    """The job cannot complete; the message is its FailureReason."""


# -- CreateTransformJob checks ------------------------------------------------------------------------------
def check_request(params: dict[str, Any], model: ModelRecord) -> DataProcessing:
    """What botocore's model cannot check; ValueError with a one-line reason naming the field."""
    if model.mode == "Direct" or any(c.multi_model for c in model.containers):
        raise ValueError(f"Model {model.name} is a multi-model or direct-invocation model; batch transform "
                         "runs single-container models and serial inference pipelines")
    source = params["TransformInput"]["DataSource"]["S3DataSource"]
    if source["S3DataType"] not in ("S3Prefix", "ManifestFile"):
        raise ValueError(f"S3DataType {source['S3DataType']} is not supported by the local harness; "
                         "use S3Prefix or ManifestFile")
    split = params["TransformInput"].get("SplitType") or "None"
    if split not in ("None", "Line"):
        raise ValueError(f"SplitType {split} is not supported by the local harness; use None or Line")
    _check_limits(params)
    if params.get("DataCaptureConfig"):
        raise ValueError("DataCaptureConfig is not supported by the local harness (nothing would be captured)")
    return data_processing(params.get("DataProcessing"), params["TransformInput"].get("ContentType"),
                           params["TransformOutput"].get("Accept"), split_line=split == "Line")


def _check_limits(params: dict[str, Any]) -> None:
    concurrent, payload_mb = params.get("MaxConcurrentTransforms"), params.get("MaxPayloadInMB")
    if concurrent and concurrent > MAX_CONCURRENT_TRANSFORMS:
        raise ValueError(f"MaxConcurrentTransforms must be at most {MAX_CONCURRENT_TRANSFORMS}, not {concurrent}")
    if payload_mb == 0:
        raise ValueError("MaxPayloadInMB 0 (payloads of any size, sent chunked) is not supported by the "
                         f"local harness; use 1-{MAX_PAYLOAD_MB}")
    if payload_mb and payload_mb > MAX_PAYLOAD_MB:
        raise ValueError(f"MaxPayloadInMB must be at most {MAX_PAYLOAD_MB}, not {payload_mb}")
    if concurrent and payload_mb and concurrent * payload_mb > MAX_PAYLOAD_MB:
        raise ValueError(f"MaxConcurrentTransforms * MaxPayloadInMB ({concurrent} * {payload_mb}) must not "
                         f"exceed {MAX_PAYLOAD_MB} MB")


# -- execution parameters ---------------------------------------------------------------------------------
def resolve_parameters(params: dict[str, Any], answered: dict[str, Any] | None) -> dict[str, Any]:
    """The three execution parameters: the job's, else the container's answer, else SageMaker's
    defaults; TransformFailed names a value the container answered that cannot be used."""
    answered = answered or {}
    resolved: dict[str, Any] = {}
    for name, default in DEFAULTS.items():
        value = params.get(name) or answered.get(name)
        if value is None:
            value = default
        elif name not in params or not params[name]:
            value = _from_container(name, value)
        resolved[name] = value
    return resolved


def _from_container(name: str, value: Any) -> Any:
    if name == "BatchStrategy":
        strategies = {v: k for k, v in STRATEGY_NAMES.items()}
        if value not in strategies:
            raise TransformFailed(f"GET /execution-parameters answered BatchStrategy {value!r}; expected "
                                  "MULTI_RECORD or SINGLE_RECORD")
        return strategies[value]
    upper = MAX_CONCURRENT_TRANSFORMS if name == "MaxConcurrentTransforms" else MAX_PAYLOAD_MB
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= upper:
        raise TransformFailed(f"GET /execution-parameters answered {name} {value!r}; expected an integer "
                              f"1-{upper}")
    return value


def batch_environment(params: dict[str, Any]) -> dict[str, str]:
    """What a batch container is told: SAGEMAKER_BATCH, and the execution parameters the job sets."""
    env = {"SAGEMAKER_BATCH": "true"}
    if params.get("MaxPayloadInMB"):
        env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(params["MaxPayloadInMB"])
    if params.get("BatchStrategy"):
        env["SAGEMAKER_BATCH_STRATEGY"] = STRATEGY_NAMES[params["BatchStrategy"]]
    if params.get("MaxConcurrentTransforms"):
        env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(params["MaxConcurrentTransforms"])
    return env


def batch_model(model: ModelRecord, params: dict[str, Any]) -> ModelRecord:
    """The model as a transform job runs it: every container gets the job's Environment and the batch
    variables over its own."""
    extra = {**(params.get("Environment") or {}), **batch_environment(params)}
    containers = [dataclasses.replace(c, environment={**c.environment, **extra}) for c in model.containers]
    return dataclasses.replace(model, containers=containers)


# -- the job ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """How one job sends its mini-batches."""

    concurrency: int  # MaxConcurrentTransforms, per instance
    multi_record: bool
    max_payload_bytes: int
    timeout_s: float
    retries: int

    @classmethod
    def of(cls, params: dict[str, Any], resolved: dict[str, Any]) -> Settings:
        client = params.get("ModelClientConfig") or {}
        retries = client.get("InvocationsMaxRetries")
        return cls(concurrency=resolved["MaxConcurrentTransforms"],
                   multi_record=resolved["BatchStrategy"] == "MultiRecord",
                   max_payload_bytes=resolved["MaxPayloadInMB"] * MB,
                   timeout_s=float(client.get("InvocationsTimeoutInSeconds") or DEFAULT_INVOCATION_TIMEOUT_S),
                   retries=DEFAULT_MAX_RETRIES if retries is None else int(retries))


class DataLog:
    """The job's own log stream, ``<job>/data-log``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, line: str) -> None:
        with open(self.path, "a") as out:
            out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


def job_log_dir(state_dir: Path, name: str) -> Path:
    """Where a transform job's log streams go (like /aws/sagemaker/TransformJobs)."""
    return state_dir / "logs" / "_transform-jobs" / safe_name(name)


def data_log_path(state_dir: Path, name: str) -> Path:
    """The job's own log stream ``<job>/data-log``."""
    return job_log_dir(state_dir, name) / f"{safe_name(name)}__data-log.log"


class TransformJob:
    """One running CreateTransformJob."""

    def __init__(self, platform: Platform, router: Router, record: TransformJobRecord, model: ModelRecord,
                 processing: DataProcessing) -> None:
        self.platform, self.router, self.record = platform, router, record
        self.params = record.params
        self.model = batch_model(model, self.params)
        self.processing = processing
        self.s3 = S3Objects(platform.config.region, platform.config.s3_endpoint_url)
        self.log_dir = job_log_dir(platform.config.state_dir, record.name)
        self.data_log = DataLog(data_log_path(platform.config.state_dir, record.name))
        self.work_dir = platform.config.state_dir / "transform-jobs" / safe_name(record.name) / secrets.token_hex(4)
        self.settings: Settings | None = None
        self._instances: Iterator[Instance] = iter(())

    async def execute(self) -> str | None:
        """Run the job to its end; the FailureReason, or None when every object was transformed."""
        deployment = Deployment(endpoint=self.record.name, work_dir=self.work_dir, log_dir=self.log_dir)
        try:
            variant = await start_variant(self.platform, deployment, self._variant(), self.model)
            deployment.variants.append(variant)
            await self._resolve(variant)
            source = self.params["TransformInput"]["DataSource"]["S3DataSource"]
            inputs = await asyncio.to_thread(self.s3.inputs, source["S3DataType"], source["S3Uri"])
            failures = [f for f in [await self._transform_object(variant, s) for s in inputs] if f]
            return failures[0] if failures else None
        except (DeploymentFailed, S3InputError, TransformFailed) as exc:
            self.data_log.write(f"job failed: {exc}")
            return str(exc)
        finally:
            await stop_deployment(self.platform, deployment)

    def _variant(self) -> dict[str, Any]:
        resources = self.params["TransformResources"]
        return {"VariantName": self.record.name, "InstanceType": resources["InstanceType"],
                "InitialInstanceCount": resources["InstanceCount"]}

    async def _resolve(self, variant: VariantDeployment) -> None:
        """Execution parameters: the job's, the container's GET /execution-parameters, or the defaults."""
        answered = None
        if any(not self.params.get(name) for name in DEFAULTS):
            first = variant.instances[0].containers[0]
            try:
                answered = await self.platform.container_client.execution_parameters(first.running)
            except ValueError as exc:
                raise TransformFailed(f"Container {first.label}: {exc}") from None
        self.record.resolved = resolve_parameters(self.params, answered)
        self.settings = Settings.of(self.params, self.record.resolved)
        self._instances = itertools.cycle(variant.instances)
        origin = "GET /execution-parameters" if answered is not None else "the job and SageMaker's defaults"
        self.data_log.write(f"execution parameters {self.record.resolved} (from {origin})")

    # -- one input object ----------------------------------------------------------------------------------
    def _batches(self, source: InputObject) -> Iterator[list[bytes]]:
        """The object's mini-batches, read as a stream (runs in a thread, one ``next`` at a time)."""
        settings = self.settings
        assert settings is not None
        transform_input = self.params["TransformInput"]
        chunks = self.s3.read(source, gzip=transform_input.get("CompressionType") == "Gzip")
        split = split_lines if transform_input.get("SplitType") == "Line" else whole_object
        records = split(chunks, settings.max_payload_bytes)
        return mini_batches(records, multi_record=settings.multi_record, max_bytes=settings.max_payload_bytes)

    async def _transform_object(self, variant: VariantDeployment, source: InputObject) -> str | None:
        """Transform one object into its ``.out``; the failure (and no output) when a mini-batch fails."""
        settings = self.settings
        assert settings is not None
        self.data_log.write(f"transforming {source.uri}")
        part = self.work_dir / "output" / f"{uuid.uuid4().hex}.part"
        part.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        try:
            counts = await self._write_output(variant, source, part, settings.concurrency * len(variant.instances))
            target = output_uri(self.params["TransformOutput"]["S3OutputPath"], source)
            await asyncio.to_thread(self.s3.upload, part, target)
        except (TransformFailed, RecordError, S3InputError) as exc:
            reason = f"ClientError: {source.uri}: {exc}. See job logs for more information."
            self.data_log.write(reason)
            return reason[:FAILURE_REASON_LENGTH]
        finally:
            part.unlink(missing_ok=True)
        seconds = time.perf_counter() - started
        self.data_log.write(f"wrote {target}: {counts[0]} records in {counts[1]} mini-batches, {seconds:.3f} s "
                            f"({counts[0] / max(seconds, 1e-9):.1f} records/s)")
        return None

    async def _write_output(self, variant: VariantDeployment, source: InputObject, part: Path,
                            capacity: int) -> tuple[int, int]:
        """Post the object's mini-batches, at most ``capacity`` at once, and write the answers in order;
        (records, mini-batches)."""
        batches = self._batches(source)
        in_flight: deque[asyncio.Task[bytes]] = deque()
        records = count = 0
        try:
            with open(part, "wb") as out:
                while (batch := await asyncio.to_thread(next, batches, None)) is not None:
                    in_flight.append(asyncio.create_task(self._invoke(variant, batch)))
                    records, count = records + len(batch), count + 1
                    if len(in_flight) >= capacity:
                        out.write(await in_flight.popleft())
                while in_flight:
                    out.write(await in_flight.popleft())
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
        return records, count

    async def _invoke(self, variant: VariantDeployment, batch: list[bytes]) -> bytes:
        """One mini-batch through the model (retried), its answer processed and assembled."""
        settings = self.settings
        assert settings is not None
        transform_input, transform_output = self.params["TransformInput"], self.params["TransformOutput"]
        invocation = Invocation(endpoint=self.record.name, request_id=str(uuid.uuid4()),
                                body=payload(self.processing.filter_input(batch)),
                                content_type=transform_input.get("ContentType"),
                                accept=transform_output.get("Accept"), timeout_s=settings.timeout_s)
        status: object = None
        failure: object = None
        for attempt in range(settings.retries + 1):
            try:
                reply = await self.router.run_model(invocation, variant, next(self._instances))
                break
            except ModelError as error:
                self.data_log.write(f"mini-batch of {len(batch)} record(s), attempt {attempt + 1}: {error.message}")
                failure = error.members.get("OriginalMessage") or error.message
                status = error.members.get("OriginalStatusCode")
        else:
            raise TransformFailed(f"Bad HTTP status received from algorithm: {status}: {failure}")
        processed = self.processing.process_output(batch, reply.body)
        return assemble(processed, transform_output.get("AssembleWith") == "Line")


async def run_transform_job(platform: Platform, router: Router, record: TransformJobRecord, model: ModelRecord,
                            processing: DataProcessing) -> None:
    """The background task of one job: run it and leave it Completed, Failed or Stopped."""
    record.started = time.time()
    job = TransformJob(platform, router, record, model, processing)
    try:
        try:
            failure = await job.execute()
        except Exception as exc:  # a harness defect must still end in a visible state
            log.exception("transform job %s failed", record.name)
            failure = f"InternalServerError: the local harness failed: {exc}"
        finally:
            await asyncio.to_thread(shutil.rmtree, job.work_dir, True)
    except asyncio.CancelledError:  # StopTransformJob, during the job or its clean-up
        record.set_status("Stopped")
        job.data_log.write("job stopped")
        return
    if record.status == "Stopping":
        # StopTransformJob arrived while the last mini-batch finished: a stopped job ends Stopped
        # (API reference, StopTransformJob), whatever the cancellation reached.
        record.set_status("Stopped")
        job.data_log.write("job stopped")
    elif failure:
        record.set_status("Failed", failure)
    else:
        record.set_status("Completed")
