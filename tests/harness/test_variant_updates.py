"""UpdateEndpointWeightsAndCapacities through boto3, on the process backend with the stand-in container of
fake_container.py (docs/harness.md "Control plane")."""

from __future__ import annotations

import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.exceptions
import pytest

from tests.harness.conftest import IMAGE, boto_clients, deploy, wait_in_service

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def two_variants(sm: Any, name: str, weights: tuple[float, float]) -> None:
    """Endpoint ``name`` with variants Main (model a) and Canary (model b), one instance each."""
    for model in ("a", "b"):
        sm.create_model(ModelName=model, ExecutionRoleArn=ROLE,
                        PrimaryContainer={"Image": IMAGE, "Environment": {"USER_SETTING": model}})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": variant, "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
         "InitialVariantWeight": weight}
        for variant, model, weight in (("Main", "a", weights[0]), ("Canary", "b", weights[1]))])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_in_service(sm, name)


def traffic(rt: Any, name: str, count: int) -> Counter[str]:
    """How many of ``count`` requests each variant answered; four at a time, within the stand-in's listen
    backlog (ThreadingHTTPServer's 5), so none waits out the harness's 1 s connect timeout."""
    def one(_: int) -> str:
        return str(rt.invoke_endpoint(EndpointName=name, Body=b"{}")["InvokedProductionVariant"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        return Counter(pool.map(one, range(count)))


def variants(sm: Any, name: str) -> dict[str, tuple[float, float, int, int]]:
    """Per variant: (CurrentWeight, DesiredWeight, CurrentInstanceCount, DesiredInstanceCount)."""
    return {v["VariantName"]: (v["CurrentWeight"], v["DesiredWeight"], v["CurrentInstanceCount"],
                               v["DesiredInstanceCount"])
            for v in sm.describe_endpoint(EndpointName=name)["ProductionVariants"]}


def test_weights_move_traffic(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    two_variants(sm, "ab", (1.0, 0.0))
    assert traffic(rt, "ab", 20) == {"Main": 20}  # weight 0 gets no traffic

    answer = sm.update_endpoint_weights_and_capacities(EndpointName="ab", DesiredWeightsAndCapacities=[
        {"VariantName": "Main", "DesiredWeight": 0.0}, {"VariantName": "Canary", "DesiredWeight": 2.0}])
    assert answer["EndpointArn"] == "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ab"
    wait_in_service(sm, "ab")
    assert variants(sm, "ab") == {"Main": (0.0, 0.0, 1, 1), "Canary": (2.0, 2.0, 1, 1)}
    assert sm.describe_endpoint(EndpointName="ab")["EndpointConfigName"] == "ab"  # no new configuration
    assert traffic(rt, "ab", 20) == {"Canary": 20}
    answer = json.loads(rt.invoke_endpoint(EndpointName="ab", Body=b"{}")["Body"].read())
    assert answer["user_env"] == "b"

    # Equal weights: each of 400 requests is a fair coin; outside 120..280 has probability below 1e-13
    # (Hoeffding: 2·exp(-2·80²/400) = 2.5e-14).
    sm.update_endpoint_weights_and_capacities(EndpointName="ab", DesiredWeightsAndCapacities=[
        {"VariantName": "Main", "DesiredWeight": 1.0}, {"VariantName": "Canary", "DesiredWeight": 1.0}])
    wait_in_service(sm, "ab")
    split = traffic(rt, "ab", 400)
    assert sum(split.values()) == 400 and 120 <= split["Main"] <= 280, split


def test_instance_counts_start_and_stop_containers(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    deploy(sm, "grow", PrimaryContainer={"Image": IMAGE})
    deployment = fake_harness.platform.store.endpoints["grow"].deployment
    first = deployment.variants[0].instances[0]
    fake_harness.platform.faults.delay_start(1.0)  # holds the new instances back: Updating is seen
    sm.update_endpoint_weights_and_capacities(EndpointName="grow", DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 3}])
    described = sm.describe_endpoint(EndpointName="grow")
    assert described["EndpointStatus"] == "Updating"
    assert variants(sm, "grow") == {"AllTraffic": (1.0, 1.0, 1, 3)}
    assert rt.invoke_endpoint(EndpointName="grow", Body=b"{}")["InvokedProductionVariant"] == "AllTraffic"
    fake_harness.platform.faults.clear()
    wait_in_service(sm, "grow")  # the endpoint_in_service waiter, after the update
    assert variants(sm, "grow") == {"AllTraffic": (1.0, 1.0, 3, 3)}
    instances = list(deployment.variants[0].instances)
    assert len({i.instance_id for i in instances}) == 3 and instances[0] is first
    assert all(c.running.exit_code() is None for i in instances for c in i.containers)
    ports = {json.loads(rt.invoke_endpoint(EndpointName="grow", Body=b"{}")["Body"].read())["port"]
             for _ in range(6)}
    assert len(ports) == 3  # round-robin reaches every instance

    sm.update_endpoint_weights_and_capacities(EndpointName="grow", DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 1}])
    wait_in_service(sm, "grow")
    assert variants(sm, "grow") == {"AllTraffic": (1.0, 1.0, 1, 1)}
    assert deployment.variants[0].instances == [first]
    assert all(c.running.exit_code() is not None for i in instances[1:] for c in i.containers)
    assert rt.invoke_endpoint(EndpointName="grow", Body=b"{}")["InvokedProductionVariant"] == "AllTraffic"


def error_of(call: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]


def test_refusals(fake_harness):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    two_variants(sm, "ab", (1.0, 1.0))
    update = sm.update_endpoint_weights_and_capacities
    arn = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ab"
    refusals = {
        "ghost": ([{"VariantName": "Main", "DesiredWeight": 1.0}],
                  'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ghost".'),
        "ab": ([{"VariantName": "Nope", "DesiredWeight": 1.0}],
               f'The variant Nope does not exist in endpoint "{arn}".'),
    }
    for endpoint, (desired, message) in refusals.items():
        assert error_of(update, EndpointName=endpoint, DesiredWeightsAndCapacities=desired) == {
            "Code": "ValidationException", "Message": message}
    for desired, message in (
        ([{"VariantName": "Main", "DesiredWeight": 1.0}, {"VariantName": "Main", "DesiredInstanceCount": 2}],
         "Variant name Main is given more than once; names must be unique."),
        ([{"VariantName": "Main", "DesiredInstanceCount": 0}],
         "Variant Main: DesiredInstanceCount must be at least 1; only endpoints with inference components "
         "scale to zero instances."),
        ([{"VariantName": "Main", "ServerlessUpdateConfig": {"MaxConcurrency": 2}}],
         "Variant Main: ServerlessUpdateConfig is not supported by the local harness (change a serverless variant "
         "with UpdateEndpoint)."),
    ):
        assert error_of(update, EndpointName="ab", DesiredWeightsAndCapacities=desired) == {
            "Code": "ValidationException", "Message": message}
    # Nothing refused changed anything.
    assert variants(sm, "ab") == {"Main": (1.0, 1.0, 1, 1), "Canary": (1.0, 1.0, 1, 1)}
    assert sm.describe_endpoint(EndpointName="ab")["EndpointStatus"] == "InService"

    fake_harness.platform.faults.delay_start(1.0)
    update(EndpointName="ab", DesiredWeightsAndCapacities=[{"VariantName": "Canary", "DesiredInstanceCount": 2}])
    assert error_of(update, EndpointName="ab", DesiredWeightsAndCapacities=[
        {"VariantName": "Main", "DesiredWeight": 0.5}]) == {
        "Code": "ValidationException", "Message": f'Cannot update in-progress endpoint "{arn}".'}
    fake_harness.platform.faults.clear()
    wait_in_service(sm, "ab")
    assert variants(sm, "ab") == {"Main": (1.0, 1.0, 1, 1), "Canary": (1.0, 1.0, 2, 2)}


def test_failed_scale_out_keeps_what_runs(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    two_variants(sm, "ab", (1.0, 0.0))
    backend = fake_harness.backend
    serving, backend.command = backend.command, [sys.executable, "-c", "raise SystemExit(3)"]  # new ones exit
    sm.update_endpoint_weights_and_capacities(EndpointName="ab", DesiredWeightsAndCapacities=[
        {"VariantName": "Main", "DesiredWeight": 0.0, "DesiredInstanceCount": 2},
        {"VariantName": "Canary", "DesiredWeight": 1.0}])
    wait_in_service(sm, "ab")
    backend.command = serving
    described = sm.describe_endpoint(EndpointName="ab")
    assert described["FailureReason"] == ("The primary container for production variant Main did not pass the "
                                          "ping health check. Please check CloudWatch logs for this endpoint.")
    assert variants(sm, "ab") == {"Main": (1.0, 1.0, 1, 1), "Canary": (0.0, 0.0, 1, 1)}
    assert traffic(rt, "ab", 20) == {"Main": 20}  # the old weights still route
