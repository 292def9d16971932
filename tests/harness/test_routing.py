"""ProductionVariant RoutingConfig across a variant's instances, through boto3, on the process backend with
the stand-in container of fake_container.py (docs/harness.md "Routing across instances")."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tests.harness.conftest import IMAGE, boto_clients, wait_in_service

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def two_instances(sm: Any, name: str, routing: str | None) -> None:
    variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large",
                               "InitialInstanceCount": 2}
    if routing is not None:
        variant["RoutingConfig"] = {"RoutingStrategy": routing}
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_in_service(sm, name)


def answered_by(rt: Any, endpoint: str) -> str:
    """The port of the instance that answered (the stand-in container reports SAGEMAKER_BIND_TO_PORT)."""
    answer = rt.invoke_endpoint(EndpointName=endpoint, Body=b'{"x": 1}', ContentType="application/json")
    return str(json.loads(answer["Body"].read())["port"])


def test_least_outstanding_requests_avoids_the_busy_instance(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    two_instances(sm, "lor", "LEAST_OUTSTANDING_REQUESTS")
    instances = fake_harness.platform.store.endpoints["lor"].deployment.variants[0].instances
    slow = threading.Thread(target=rt.invoke_endpoint, kwargs={
        "EndpointName": "lor", "Body": b"sleep:3", "ContentType": "text/plain"})
    slow.start()
    deadline = time.monotonic() + 20
    while not any(instance.in_flight for instance in instances):
        assert time.monotonic() < deadline, "the slow request never reached an instance"
        time.sleep(0.01)
    [busy] = [instance for instance in instances if instance.in_flight]
    busy_port = str(busy.containers[0].running.spec.port)
    answers = {answered_by(rt, "lor") for _ in range(6)}
    slow.join(30)
    assert busy_port not in answers and len(answers) == 1, (busy_port, answers)


def test_unset_routing_is_round_robin_and_random_reaches_every_instance_out_of_turn(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    two_instances(sm, "rr", None)
    turns = [answered_by(rt, "rr") for _ in range(6)]
    assert turns[0::2] == [turns[0]] * 3 and turns[1::2] == [turns[1]] * 3 and turns[0] != turns[1]
    two_instances(sm, "rnd", "RANDOM")
    picks = [answered_by(rt, "rnd") for _ in range(40)]
    # Round robin would alternate; 40 random picks alternate perfectly with probability 2**-39.
    assert len(set(picks)) == 2 and any(a == b for a, b in zip(picks, picks[1:], strict=False)), picks
