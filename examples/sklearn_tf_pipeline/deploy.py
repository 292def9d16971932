"""Deploy the churn pipeline with plain boto3: a serial inference pipeline, the same two containers as
a Direct multi-container endpoint, and (``--mme``) a multi-model endpoint of per-region models.

Against AWS (images pushed to ECR, artifacts uploaded under the S3 prefix, an execution role):

    python -m examples.sklearn_tf_pipeline.deploy --artifacts artifacts/ \\
        --image-sklearn 123456789012.dkr.ecr.us-east-1.amazonaws.com/servekit-sklearn:latest \\
        --image-tensorflow 123456789012.dkr.ecr.us-east-1.amazonaws.com/servekit-tensorflow:latest \\
        --s3-prefix s3://my-bucket/churn --role arn:aws:iam::123456789012:role/SageMakerRole

Against the local harness (``servekit local up``): ``--endpoint-url http://127.0.0.1:8181``; images
default to ``servekit-sklearn:latest`` / ``servekit-tensorflow:latest`` and artifacts are passed as
local paths (or uploaded when ``--s3-prefix`` is given). Nothing else differs.

Everything the script creates (models, endpoint configs, endpoints, uploaded objects) is deleted at
the end, also after a failure, unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.sklearn_tf_pipeline.serving import churn_schema

PREPROCESSOR_HOST = "preprocessor"
MODEL_HOST = "model"
LOCAL_ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
#: Raw rows the script sends: strings in the categorical columns, one row with missing fields.
SAMPLE_ROWS: list[list[Any]] = [
    [42, "month-to-month", 3, 89.9, "electronic-check", 4, "north"],
    [61, "two-year", 60, 45.5, "bank-transfer", 0, "south"],
    [29, "one-year", 14, 72.0, "card", 1, "east"],
    [35, "month-to-month", 1, None, None, 2, ""],
]


@dataclass
class Created:
    """What this run created, in creation order, so it can all be deleted."""

    models: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    s3_objects: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Results:
    """What the invocations returned (the demo and the tests read these)."""

    pipeline: list[float] = field(default_factory=list)
    pipeline_content_type: str = ""
    hop_content_type: str = ""
    hop_features: list[list[float]] = field(default_factory=list)
    direct: list[float] = field(default_factory=list)
    mme: dict[str, list[float]] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)  # role -> endpoint name
    timings: dict[str, float] = field(default_factory=dict)


def clients(endpoint_url: str | None, region: str) -> tuple[Any, Any, Any]:
    """boto3 (sagemaker, sagemaker-runtime, s3) clients; pointed at ``endpoint_url`` when given.

    For the local harness any credentials do; boto3 still wants some, so dummy ones are set only
    when the environment has none.
    """
    import boto3

    session = boto3.session.Session(region_name=region)
    kwargs: dict[str, Any] = {}
    if endpoint_url and session.get_credentials() is None:
        kwargs = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    sm = session.client("sagemaker", endpoint_url=endpoint_url, **kwargs)
    runtime = session.client("sagemaker-runtime", endpoint_url=endpoint_url, **kwargs)
    # S3 is never the harness: boto3 finds a local S3 through AWS_ENDPOINT_URL_S3 if there is one.
    s3 = session.client("s3", **kwargs)
    return sm, runtime, s3


def upload(s3: Any, path: Path, prefix: str, key: str, created: Created) -> str:
    """Upload ``path`` to ``<prefix>/<key>``; returns its s3:// URL."""
    if not prefix.startswith("s3://"):
        raise SystemExit(f"--s3-prefix must be an s3:// URL, got {prefix!r}")
    bucket, _, base = prefix[len("s3://"):].partition("/")
    object_key = f"{base.strip('/')}/{key}".lstrip("/")
    s3.upload_file(str(path), bucket, object_key)
    created.s3_objects.append((bucket, object_key))
    return f"s3://{bucket}/{object_key}"


def pipeline_containers(images: dict[str, str], urls: dict[str, str], hop: str) -> list[dict[str, Any]]:
    """The two container definitions: scikit-learn preprocessor, then the TensorFlow model.

    ``hop`` (``text/csv`` or ``application/json``) is the format the preprocessor answers in when its
    request has no Accept, which is how a serial pipeline calls it (contract §4.2): set with
    SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT on that container.
    """
    return [
        {"ContainerHostname": PREPROCESSOR_HOST, "Image": images["sklearn"], "ModelDataUrl": urls["preprocessor"],
         "Environment": {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": hop}},
        {"ContainerHostname": MODEL_HOST, "Image": images["tensorflow"], "ModelDataUrl": urls["model"],
         "Environment": {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json"}},
    ]


def create_endpoint(sm: Any, name: str, role: str, instance_type: str, created: Created, **model: Any) -> None:
    """CreateModel, CreateEndpointConfig and CreateEndpoint, all named ``name`` (no waiting)."""
    sm.create_model(ModelName=name, ExecutionRoleArn=role, **model)
    created.models.append(name)
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": instance_type, "InitialInstanceCount": 1}])
    created.configs.append(name)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    created.endpoints.append(name)


def wait_in_service(sm: Any, name: str, delay: float) -> None:
    """The endpoint_in_service waiter; on failure, exit with the endpoint's FailureReason."""
    from botocore.exceptions import WaiterError

    try:
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName=name, WaiterConfig={"Delay": delay, "MaxAttempts": max(60, int(1800 / max(delay, 0.1)))})
    except WaiterError:
        reason = sm.describe_endpoint(EndpointName=name).get("FailureReason", "(no FailureReason)")
        raise RuntimeError(f"endpoint {name} did not come into service: {reason}") from None


def probabilities(body: bytes) -> list[float]:
    """The TensorFlow container's JSON answer ``{"predictions": [[p], ...]}`` -> ``[p, ...]``."""
    decoded = json.loads(body)
    values = decoded["predictions"] if isinstance(decoded, dict) else decoded
    return [float(v[0]) if isinstance(v, list) else float(v) for v in values]


def cleanup(sm: Any, s3: Any, created: Created, delay: float, say: Callable[[str], None]) -> None:
    """Delete everything in ``created`` (endpoints first); report but survive individual failures."""
    for name in reversed(created.endpoints):
        try:
            sm.delete_endpoint(EndpointName=name)
        except Exception as exc:  # keep deleting the rest
            say(f"  could not delete endpoint {name}: {exc}")
    for name in reversed(created.endpoints):
        try:
            sm.get_waiter("endpoint_deleted").wait(EndpointName=name,
                                                   WaiterConfig={"Delay": delay, "MaxAttempts": 120})
        except Exception as exc:
            say(f"  endpoint {name} was not deleted: {exc}")
    for name in reversed(created.configs):
        try:
            sm.delete_endpoint_config(EndpointConfigName=name)
        except Exception as exc:
            say(f"  could not delete endpoint config {name}: {exc}")
    for name in reversed(created.models):
        try:
            sm.delete_model(ModelName=name)
        except Exception as exc:
            say(f"  could not delete model {name}: {exc}")
    for bucket, key in created.s3_objects:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            say(f"  could not delete s3://{bucket}/{key}: {exc}")
    say(f"deleted {len(created.endpoints)} endpoint(s), {len(created.configs)} endpoint config(s), "
        f"{len(created.models)} model(s), {len(created.s3_objects)} uploaded object(s)")


def run(args: argparse.Namespace, say: Callable[[str], None] = print,
        before_cleanup: Callable[[Results], None] | None = None) -> Results:
    """Deploy, invoke, print, clean up. ``before_cleanup`` sees the results while the endpoints still exist."""
    artifacts = Path(args.artifacts).resolve()
    needed = [artifacts / "preprocessor.tar.gz", artifacts / "model.tar.gz"]
    mme_tars = sorted((artifacts / "mme").glob("*.tar.gz")) if args.mme else []
    missing = [str(p) for p in needed if not p.is_file()] + (
        [str(artifacts / "mme" / "*.tar.gz")] if args.mme and not mme_tars else [])
    if missing:
        raise SystemExit(f"missing artifacts {', '.join(missing)}: run python -m examples.sklearn_tf_pipeline.train "
                         f"--out {artifacts}")
    local = bool(args.endpoint_url)
    if not local and not (args.image_sklearn and args.image_tensorflow and args.s3_prefix and args.role):
        raise SystemExit("against AWS give --image-sklearn, --image-tensorflow, --s3-prefix and --role "
                         "(or --endpoint-url for the local harness)")
    images = {"sklearn": args.image_sklearn or "servekit-sklearn:latest",
              "tensorflow": args.image_tensorflow or "servekit-tensorflow:latest"}
    role = args.role or LOCAL_ROLE
    delay = args.poll_seconds if args.poll_seconds is not None else (1.0 if local else 30.0)
    sm, runtime, s3 = clients(args.endpoint_url, args.region)
    created = Created()
    results = Results()
    suffix = uuid.uuid4().hex[:6]
    names = {"pipeline": f"{args.name}-pipeline-{suffix}", "direct": f"{args.name}-direct-{suffix}",
             "mme": f"{args.name}-mme-{suffix}"}
    t0 = time.perf_counter()
    try:
        # 1. Artifacts: uploaded to S3 when a prefix is given, else local paths (harness only).
        if args.s3_prefix:
            urls = {"preprocessor": upload(s3, needed[0], args.s3_prefix, f"{suffix}/preprocessor.tar.gz", created),
                    "model": upload(s3, needed[1], args.s3_prefix, f"{suffix}/model.tar.gz", created)}
            for tar in mme_tars:
                upload(s3, tar, args.s3_prefix, f"{suffix}/mme/{tar.name}", created)
            urls["mme"] = f"{args.s3_prefix.rstrip('/')}/{suffix}/mme/"
        else:
            urls = {"preprocessor": str(needed[0]), "model": str(needed[1]), "mme": str(artifacts / "mme")}
        containers = pipeline_containers(images, urls, args.hop)

        # 2. Create every endpoint, then wait for all of them (they start in parallel).
        create_endpoint(sm, names["pipeline"], role, args.instance_type, created,
                        Containers=containers, InferenceExecutionConfig={"Mode": "Serial"})
        waiting = ["pipeline"]
        if not args.skip_direct:
            create_endpoint(sm, names["direct"], role, args.instance_type, created,
                            Containers=containers, InferenceExecutionConfig={"Mode": "Direct"})
            waiting.append("direct")
        if mme_tars:
            create_endpoint(sm, names["mme"], role, args.instance_type, created, PrimaryContainer={
                "Image": images["sklearn"], "Mode": "MultiModel", "ModelDataUrl": urls["mme"]})
            waiting.append("mme")
        say(f"creating {', '.join(names[k] for k in waiting)}; waiting for InService")
        for key in waiting:
            wait_in_service(sm, names[key], delay)
            results.endpoints[key] = names[key]
        results.timings["deploy_s"] = time.perf_counter() - t0
        say(f"in service after {results.timings['deploy_s']:.1f} s")

        # 3. Serial pipeline: raw CSV rows in, churn probabilities out.
        body = churn_schema.to_csv(SAMPLE_ROWS)
        t1 = time.perf_counter()
        answer = runtime.invoke_endpoint(EndpointName=names["pipeline"], ContentType="text/csv",
                                         Accept="application/json", Body=body)
        results.timings["pipeline_invoke_s"] = time.perf_counter() - t1
        results.pipeline = probabilities(answer["Body"].read())
        results.pipeline_content_type = answer["ContentType"]
        say(f"\nserial pipeline {names['pipeline']}  (ContentType text/csv -> {answer['ContentType']})")
        for row, p in zip(SAMPLE_ROWS, results.pipeline, strict=True):
            say(f"  {churn_schema.to_csv([row]).strip():<52} churn probability {p:.4f}")
        if args.repeat:
            # Warm calls: the first one includes TensorFlow's first-call tracing.
            latencies = []
            for _ in range(args.repeat):
                t1 = time.perf_counter()
                runtime.invoke_endpoint(EndpointName=names["pipeline"], ContentType="text/csv",
                                        Accept="application/json", Body=body)["Body"].read()
                latencies.append(time.perf_counter() - t1)
            latencies.sort()
            results.timings["pipeline_p50_s"] = latencies[len(latencies) // 2]
            say(f"  {args.repeat} more calls: client-side latency p50 {1000 * latencies[len(latencies) // 2]:.1f} ms, "
                f"max {1000 * latencies[-1]:.1f} ms (first call {1000 * results.timings['pipeline_invoke_s']:.1f} ms)")

        # 4. Direct: the same containers, one at a time, by TargetContainerHostname. No Accept to the
        #    preprocessor, as in the pipeline, so its answer is exactly the pipeline's intermediate payload.
        if not args.skip_direct:
            hop = runtime.invoke_endpoint(EndpointName=names["direct"], TargetContainerHostname=PREPROCESSOR_HOST,
                                          ContentType="text/csv", Body=body)
            payload = hop["Body"].read()
            results.hop_content_type = hop["ContentType"]
            results.hop_features = churn_schema.decode_features(payload, hop["ContentType"]).tolist()
            say(f"\ndirect {names['direct']}: {PREPROCESSOR_HOST} answered {hop['ContentType']!r}, "
                f"{len(results.hop_features)} rows x {len(results.hop_features[0])} features; first row:")
            say("  " + payload.decode().splitlines()[0][:110] + ("..." if len(payload.splitlines()[0]) > 110 else ""))
            final = runtime.invoke_endpoint(EndpointName=names["direct"], TargetContainerHostname=MODEL_HOST,
                                            ContentType=hop["ContentType"], Accept="application/json", Body=payload)
            results.direct = probabilities(final["Body"].read())
            say(f"  {MODEL_HOST} on that payload: {', '.join(f'{p:.4f}' for p in results.direct)}")

        # 5. Multi-model endpoint: the same rows through each per-region scikit-learn model.
        if mme_tars:
            say(f"\nmulti-model endpoint {names['mme']} ({len(mme_tars)} models)")
            for tar in mme_tars:
                answer = runtime.invoke_endpoint(EndpointName=names["mme"], TargetModel=tar.name,
                                                 ContentType="text/csv", Accept="application/json", Body=body)
                results.mme[tar.name] = [float(v) for v in json.loads(answer["Body"].read())]
                say(f"  TargetModel={tar.name:<22} {', '.join(f'{p:.4f}' for p in results.mme[tar.name])}")
        if before_cleanup is not None:
            before_cleanup(results)
    finally:
        if args.keep:
            say(f"--keep: leaving endpoints {', '.join(created.endpoints)} in place")
        else:
            say("\ncleaning up")
            cleanup(sm, s3, created, delay, say)
    return results


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", default="artifacts", help="train.py's --out directory (default: %(default)s)")
    parser.add_argument("--endpoint-url", help="the local harness (servekit local up); omit for AWS")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--image-sklearn", help="scikit-learn image URI (default with --endpoint-url: "
                                                "servekit-sklearn:latest)")
    parser.add_argument("--image-tensorflow", help="TensorFlow image URI (default with --endpoint-url: "
                                                   "servekit-tensorflow:latest)")
    parser.add_argument("--s3-prefix", help="s3://bucket/prefix to upload the artifacts to (required for AWS)")
    parser.add_argument("--role", help="SageMaker execution role ARN (required for AWS)")
    parser.add_argument("--instance-type", default="ml.m5.large")
    parser.add_argument("--name", default="churn", help="endpoint name prefix (default: %(default)s)")
    parser.add_argument("--hop", choices=["text/csv", "application/json"], default="text/csv",
                        help="format between the two containers (default: %(default)s)")
    parser.add_argument("--mme", action="store_true", help="also deploy the per-region models as an MME")
    parser.add_argument("--skip-direct", action="store_true", help="no Direct multi-container endpoint")
    parser.add_argument("--poll-seconds", type=float, help="waiter delay (default 30 on AWS, 1 locally)")
    parser.add_argument("--repeat", type=int, default=0, help="extra pipeline calls to time (default: none)")
    parser.add_argument("--keep", action="store_true", help="do not delete what was created")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except RuntimeError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
