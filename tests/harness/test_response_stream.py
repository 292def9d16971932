"""InvokeEndpointWithResponseStream against stand-in containers that stream, break and stall on request
(fake_container.py), read with boto3 and with botocore's own event-stream parser."""

from __future__ import annotations

import json
import time
import zlib

import httpx
import pytest
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import EventStreamError

from harness import eventstream
from tests.harness.conftest import IMAGE, boto_clients, deploy, make_tar

NO_RETRY = {"retries": {"mode": "standard", "max_attempts": 1}}


def parts(response: dict) -> list[bytes]:
    return [event["PayloadPart"]["Bytes"] for event in response["Body"]]


def raw_events(url: str, endpoint: str, body: bytes, **headers: str) -> list[tuple[dict, bytes]]:
    """The stream's messages as botocore's parser reads them, from the raw HTTP answer."""
    answer = httpx.post(f"{url}/endpoints/{endpoint}/invocations-response-stream", content=body,
                        headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == eventstream.CONTENT_TYPE
    buffer = EventStreamBuffer()
    buffer.add_data(answer.content)
    return [(message.headers, message.payload) for message in buffer]


def container_url(harness, endpoint: str) -> str:
    return harness.platform.store.endpoints[endpoint].deployment.all_containers()[0].running.base_url


def metric(harness, endpoint: str, name: str) -> dict:
    return harness.platform.metrics.snapshot(endpoint)["AllTraffic"]["metrics"].get(name, {})


def test_encoder_against_botocore_parser():
    buffer = EventStreamBuffer()
    payload = bytes(range(256)) * 40  # over 2**13 bytes, every byte value
    wire = eventstream.payload_part(payload) + eventstream.model_stream_error("gone", eventstream.STREAM_BROKEN)
    for start in range(0, len(wire), 7):  # the parser is fed in pieces that cut through every field
        buffer.add_data(wire[start:start + 7])
    part, error = list(buffer)
    assert part.headers == {":event-type": "PayloadPart", ":content-type": "application/octet-stream",
                            ":message-type": "event"} and part.payload == payload
    assert error.headers[":exception-type"] == "ModelStreamError"
    assert json.loads(error.payload) == {"Message": "gone", "ErrorCode": "StreamBroken"}
    assert part.crc == zlib.crc32(wire[:part.prelude.total_length - 4])


def test_resplitter_keeps_every_byte_in_order():
    splitter = eventstream.Resplitter(seed=3)
    chunks = [b"", b"a", b"bcdefgh", "é€😀".encode(), b"xyz" * 50]
    pieces = [piece for chunk in chunks for piece in splitter.feed(chunk)] + list(splitter.finish())
    assert b"".join(pieces) == b"".join(chunks) and all(pieces)
    assert len(pieces) > len([c for c in chunks if c])


def test_stream_parts_arrive_before_the_container_finishes(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url, **NO_RETRY)
    deploy(sm, "ep", PrimaryContainer={"Image": IMAGE})
    response = rt.invoke_endpoint_with_response_stream(EndpointName="ep", Body=b"stream-gated:30",
                                                       CustomAttributes="trace=1")
    assert response["ContentType"] == "text/plain" and response["InvokedProductionVariant"] == "AllTraffic"
    events = iter(response["Body"])
    # The container sends its second chunk only once released, so this first part can only be here if
    # the harness forwarded it while the container was still answering; the container's deadline (30 s)
    # bounds the test if it did not.
    assert next(events) == {"PayloadPart": {"Bytes": b"first\n"}}
    httpx.post(container_url(fake_harness, "ep") + "/release", timeout=10).raise_for_status()
    rest = b"".join(event["PayloadPart"]["Bytes"] for event in events)
    assert rest.startswith(b"released\nmore\n")

    assert b"".join(parts(rt.invoke_endpoint_with_response_stream(EndpointName="ep", Body=b"stream:3"))) == (
        b"part-0\npart-1\npart-2\n")
    assert metric(fake_harness, "ep", "Invocations")["Sum"] == 2
    assert metric(fake_harness, "ep", "Invocation5XXErrors") == {**metric(fake_harness, "ep", "Invocation5XXErrors"),
                                                                 "Sum": 0, "SampleCount": 2}
    assert metric(fake_harness, "ep", "ModelLatency")["SampleCount"] == 2


def test_event_framing_headers_and_forwarded_request(fake_harness):
    sm, _ = boto_clients(fake_harness.endpoint_url)
    deploy(sm, "ep", PrimaryContainer={"Image": IMAGE})
    messages = raw_events(fake_harness.endpoint_url, "ep", b"stream:2")
    assert [headers[":event-type"] for headers, _ in messages] == ["PayloadPart"] * len(messages)
    assert b"".join(payload for _, payload in messages) == b"part-0\npart-1\n"

    # An ordinary (Content-Length) answer is forwarded as PayloadParts too; the request's Accept travels
    # as X-Amzn-SageMaker-Accept and reaches the container as Accept.
    _, rt = boto_clients(fake_harness.endpoint_url)
    response = rt.invoke_endpoint_with_response_stream(EndpointName="ep", Body=b"{}", ContentType="application/json",
                                                       Accept="application/jsonlines", CustomAttributes="c=1")
    seen = json.loads(b"".join(parts(response)))
    assert seen == {**seen, "accept": "application/jsonlines", "content_type": "application/json",
                    "custom_attributes": "c=1"}
    assert response["CustomAttributes"] == "seen=c=1" and response["ContentType"] == "application/json"


def test_harness_failure_mid_stream_is_internal_stream_failure(fake_harness, monkeypatch):
    sm, rt = boto_clients(fake_harness.endpoint_url, **NO_RETRY)
    deploy(sm, "ep", PrimaryContainer={"Image": IMAGE})

    def broken(self, chunk):
        raise RuntimeError("cutter broke")
        yield b""  # a generator, as Resplitter.feed is

    monkeypatch.setattr(eventstream.Resplitter, "feed", broken)
    fake_harness.config.stream_resplit = True
    with pytest.raises(EventStreamError) as caught:
        parts(rt.invoke_endpoint_with_response_stream(EndpointName="ep", Body=b"stream:2"))
    assert caught.value.response["Error"] == {
        "Code": "InternalStreamFailure", "Message": "Internal error in the local harness: cutter broke"}


def test_resplit_mode_reassembles_the_same_bytes(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    deploy(sm, "ep", PrimaryContainer={"Image": IMAGE})
    fake_harness.config.stream_resplit, fake_harness.config.stream_resplit_seed = True, 11
    received = parts(rt.invoke_endpoint_with_response_stream(EndpointName="ep", Body=b"stream:20"))
    expected = b"".join(b"part-%d\n" % i for i in range(20))
    assert b"".join(received) == expected
    assert [p for p in received if not p.endswith(b"\n")], "no part was cut inside a container chunk"


def test_mid_stream_break_and_timeout_are_model_stream_errors(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url, **NO_RETRY)
    deploy(sm, "ep", PrimaryContainer={"Image": IMAGE})
    events = iter(rt.invoke_endpoint_with_response_stream(EndpointName="ep", Body=b"stream-break:2")["Body"])
    assert next(events)["PayloadPart"]["Bytes"] == b"part-0\n"
    with pytest.raises(EventStreamError) as caught:
        list(events)
    assert caught.value.response["Error"]["Code"] == "ModelStreamError"
    assert "broken before it was complete" in caught.value.response["Error"]["Message"]
    *_, (headers, payload) = raw_events(fake_harness.endpoint_url, "ep", b"stream-break:1")
    assert headers[":message-type"] == "exception"
    assert json.loads(payload)["ErrorCode"] == "StreamBroken"
    assert metric(fake_harness, "ep", "Invocation5XXErrors")["Sum"] == 2

    # The container waits 20 s for a release that never comes: past the whole stream's limit, and past
    # the limit between two chunks.
    timed_out = {"ErrorCode": "ModelInvocationTimeExceeded", "Message": (
        "Your model primary did not complete sending the inference response in the allotted time.")}
    fake_harness.config.stream_timeout_s = 0.5
    *_, (headers, payload) = raw_events(fake_harness.endpoint_url, "ep", b"stream-gated:20")
    assert json.loads(payload) == timed_out
    fake_harness.config.stream_timeout_s, fake_harness.config.invocation_timeout_s = 300, 0.5
    first, *_, (headers, payload) = raw_events(fake_harness.endpoint_url, "ep", b"stream-gated:20")
    assert first[1] == b"first\n" and json.loads(payload) == timed_out


def test_client_that_goes_away_closes_the_container_connection(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url, **NO_RETRY)
    deploy(sm, "ep", PrimaryContainer={"Image": IMAGE})
    body = rt.invoke_endpoint_with_response_stream(EndpointName="ep", Body=b"stream-gated:30")["Body"]
    assert next(iter(body))["PayloadPart"]["Bytes"] == b"first\n"
    body.close()
    httpx.post(container_url(fake_harness, "ep") + "/release", timeout=10).raise_for_status()
    log_dir = fake_harness.platform.log_dir("ep")
    deadline = time.monotonic() + 20
    while "stream-reader-gone" not in "".join(p.read_text() for p in log_dir.glob("*.log")):
        assert time.monotonic() < deadline, "the container kept streaming after its client went away"
        time.sleep(0.05)


def test_errors_before_the_stream(fake_harness, tmp_path):
    sm, rt = boto_clients(fake_harness.endpoint_url, **NO_RETRY)
    deploy(sm, "ep", PrimaryContainer={"Image": IMAGE})
    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint_with_response_stream(EndpointName="ep", Body=b"status:415:no such type")
    assert caught.value.response["OriginalStatusCode"] == 415
    assert caught.value.response["Error"]["Message"].startswith(
        'Received client error (415) from primary with message "no such type"')
    assert metric(fake_harness, "ep", "Invocation4XXErrors")["Sum"] == 1
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint_with_response_stream(EndpointName="nope", Body=b"stream:1")
    assert caught.value.response["Error"]["Message"] == "Endpoint nope of account 123456789012 not found."
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint_with_response_stream(EndpointName="ep", Body=b"x", InferenceComponentName="ic")
    assert "has no inference components" in caught.value.response["Error"]["Message"]

    make_tar(tmp_path / "models" / "a.tar.gz", {"w": b"1"})
    deploy(sm, "mme", PrimaryContainer={"Image": IMAGE, "Mode": "MultiModel",
                                        "ModelDataUrl": (tmp_path / "models").as_uri() + "/"})
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint_with_response_stream(EndpointName="mme", Body=b"stream:1")
    assert caught.value.response["Error"]["Message"].endswith("is missing a target model header.")


def test_direct_multi_container_streams_from_the_named_container(fake_harness):
    sm, rt = boto_clients(fake_harness.endpoint_url, **NO_RETRY)
    deploy(sm, "direct", InferenceExecutionConfig={"Mode": "Direct"}, Containers=[
        {"Image": IMAGE, "ContainerHostname": "first", "Environment": {"USER_SETTING": "one"}},
        {"Image": IMAGE, "ContainerHostname": "second", "Environment": {"USER_SETTING": "two"}}])
    response = rt.invoke_endpoint_with_response_stream(EndpointName="direct", TargetContainerHostname="second",
                                                       Body=b"{}")
    assert json.loads(b"".join(parts(response)))["user_env"] == "two"
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint_with_response_stream(EndpointName="direct", TargetContainerHostname="third", Body=b"{}")
    assert "Container third does not exist" in caught.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint_with_response_stream(EndpointName="direct", TargetContainerHostname="first",
                                                Body=b"status:500:boom")
    assert "from first" in caught.value.response["Error"]["Message"]
    containers = fake_harness.platform.metrics.snapshot("direct")["AllTraffic"]["containers"]
    assert containers["second"]["ContainerLatency"]["SampleCount"] == 1

    deploy(sm, "pipe", Containers=[{"Image": IMAGE}, {"Image": IMAGE}])
    with pytest.raises(rt.exceptions.ValidationError) as caught:
        rt.invoke_endpoint_with_response_stream(EndpointName="pipe", Body=b"x")
    assert "serial inference pipeline" in caught.value.response["Error"]["Message"]


def test_cli_stream_options():
    from harness.cli import build_parser

    args = build_parser().parse_args(["local", "up", "--stream-resplit", "--stream-timeout", "5"])
    assert (args.stream_resplit, args.stream_timeout) == (True, 5.0)
    args = build_parser().parse_args(["local", "up"])
    assert (args.stream_resplit, args.stream_timeout) == (False, None)  # None: HarnessConfig's default
