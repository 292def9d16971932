"""A PyTorch token generator trained in the test, whose user script's predict_fn returns a generator,
streamed by the real ``serve`` through InvokeEndpointWithResponseStream and read with boto3: on the
process backend and (marker ``images``) the docker backend's pytorch image."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import EventStreamError

from tests.harness import token_model
from tests.harness.conftest import boto_clients, deploy, require_images


def test_pytorch_tokens_stream_as_they_are_generated(serve_harness, tmp_path):
    require_images(serve_harness, "servekit-pytorch:latest")
    pytest.importorskip("torch", reason="PyTorch is not installed: pip install torch==2.13.0")
    archive = token_model.artifact(tmp_path / "model")
    expected = token_model.expected_tokens(tmp_path / "model")
    sm, rt = boto_clients(serve_harness.endpoint_url, retries={"mode": "standard", "max_attempts": 1})
    deploy(sm, "lm", PrimaryContainer={"Image": "servekit-pytorch:latest", "ModelDataUrl": archive.as_uri(),
                                       "Environment": token_model.ENVIRONMENT})
    started = time.perf_counter()
    response = rt.invoke_endpoint_with_response_stream(
        EndpointName="lm", Body=json.dumps(token_model.REQUEST), ContentType="application/json", Accept="text/plain")
    parts = []
    for event in response["Body"]:
        parts.append(event["PayloadPart"]["Bytes"])
        if len(parts) == 1:
            first_s = time.perf_counter() - started
    total_s = time.perf_counter() - started
    assert b"".join(parts).decode() == "".join(expected)
    assert len(parts) > 1, "the tokens arrived as one part: the answer was not streamed"
    assert response["ContentType"].startswith("text/plain")
    print(f"{serve_harness.backend.name}: first part after {first_s * 1e3:.1f} ms, "
          f"all {len(parts)} parts after {total_s * 1e3:.1f} ms")

    # A generator that fails after its first tokens: serve ends the chunked body without its last chunk,
    # and the harness ends the stream with ModelStreamError (docs/harness.md "Streaming").
    failing = rt.invoke_endpoint_with_response_stream(
        EndpointName="lm", Body=json.dumps({**token_model.REQUEST, "fail_after": 3}), ContentType="application/json")
    received = []
    with pytest.raises(EventStreamError) as caught:
        for event in failing["Body"]:
            received.append(event["PayloadPart"]["Bytes"])
    assert caught.value.response["Error"]["Code"] == "ModelStreamError"
    assert b"".join(received).decode() == "".join(expected[:3])
