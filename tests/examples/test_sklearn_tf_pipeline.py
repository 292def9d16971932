"""The scikit-learn -> TensorFlow serial pipeline through the local harness, with boto3, on each backend.

Reference: ``model.predict(preprocessor.transform(rows))`` computed in this process with the very
objects that were packaged. Tolerance: rtol 1e-5, atol 1e-6 -- the hop carries float64 values
written with ``repr`` (exact) and both sides run the same float32 graph, so any difference is float32
rounding in TensorFlow's kernels; in practice the answers are bit-identical.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from examples.sklearn_tf_pipeline import deploy
from examples.sklearn_tf_pipeline.serving import churn_schema
from tests.examples.conftest import expected_probabilities

RTOL, ATOL = 1e-5, 1e-6
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
# Fresh rows (with missing values) the models never saw, the script's rows, and an unseen category.
ROWS: list[list[Any]] = (churn_schema.make_dataset(12, seed=99)[0] + deploy.SAMPLE_ROWS
                         + [[50, "weekly", 10, 55.0, "crypto", 1, "mars"]])


def assert_close(got: Any, want: Any) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module")
def endpoints(harness: Any, trained: Any) -> Iterator[dict[str, str]]:
    """Serial pipelines with a CSV hop and a JSON hop, the same containers as Direct, and an MME."""
    sm = harness.client("sagemaker")
    created = deploy.Created()
    urls = {"preprocessor": str(trained.preprocessor_tar), "model": str(trained.model_tar)}
    images = {"sklearn": "servekit-sklearn:latest", "tensorflow": "servekit-tensorflow:latest"}
    suffix = uuid.uuid4().hex[:6]
    names = {"csv": f"pipe-csv-{suffix}", "json": f"pipe-json-{suffix}", "direct": f"direct-{suffix}",
             "mme": f"mme-{suffix}"}
    deploy.create_endpoint(sm, names["csv"], ROLE, "ml.m5.large", created,
                           Containers=deploy.pipeline_containers(images, urls, "text/csv"))
    deploy.create_endpoint(sm, names["json"], ROLE, "ml.m5.large", created,
                           Containers=deploy.pipeline_containers(images, urls, "application/json"),
                           InferenceExecutionConfig={"Mode": "Serial"})
    deploy.create_endpoint(sm, names["direct"], ROLE, "ml.m5.large", created,
                           Containers=deploy.pipeline_containers(images, urls, "text/csv"),
                           InferenceExecutionConfig={"Mode": "Direct"})
    deploy.create_endpoint(sm, names["mme"], ROLE, "ml.m5.large", created, PrimaryContainer={
        "Image": images["sklearn"], "Mode": "MultiModel", "ModelDataUrl": str(trained.mme_dir)})
    for name in names.values():
        deploy.wait_in_service(sm, name, delay=0.25)
    yield names
    deploy.cleanup(sm, None, created, 0.25, say=lambda _: None)


def test_pipeline_matches_in_process(harness, trained, endpoints):
    """CSV rows in, probabilities out, for both hop formats, equal to the in-process reference."""
    rt = harness.client("sagemaker-runtime")
    want = expected_probabilities(trained, ROWS)
    for hop in ("csv", "json"):
        answer = rt.invoke_endpoint(EndpointName=endpoints[hop], ContentType="text/csv", Accept="application/json",
                                    Body=churn_schema.to_csv(ROWS))
        assert answer["ContentType"] == "application/json"
        assert_close(deploy.probabilities(answer["Body"].read()), want)
    # The churn probabilities are not constant: the reference itself discriminates.
    assert want.max() - want.min() > 0.3


def test_request_formats_at_the_first_container(harness, trained, endpoints):
    """Raw rows as JSON objects (with nulls), CSV with a header row, and CSV with a charset all work."""
    rt = harness.client("sagemaker-runtime")
    want = expected_probabilities(trained, ROWS)
    records = [{name: value for name, value in zip(churn_schema.NAMES, row, strict=True)} for row in ROWS]
    bodies = [
        (json.dumps(records), "application/json"),
        (json.dumps({"instances": ROWS}), "application/json; charset=utf-8"),
        (churn_schema.to_csv(ROWS, header=True), "text/csv; header=present"),
        (churn_schema.to_csv(ROWS), "text/csv; charset=utf-8"),
    ]
    for body, content_type in bodies:
        answer = rt.invoke_endpoint(EndpointName=endpoints["csv"], ContentType=content_type, Body=body)
        assert_close(deploy.probabilities(answer["Body"].read()), want)


def test_hop_payload_and_content_types(harness, trained, endpoints):
    """The preprocessor's answer is what the artifact declares, and the TF container takes every form.

    Direct invocation of the same containers shows the intermediate payload: with no Accept (as in a
    pipeline) the preprocessor answers SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT's format.
    """
    rt = harness.client("sagemaker-runtime")
    features = trained.preprocessor.transform(churn_schema.parse_rows(ROWS))
    manifest = trained.manifest
    assert manifest["hop_content_types"] == {"text/csv": "text/csv; charset=utf-8",
                                             "application/json": "application/json"}
    assert features.shape[1] == manifest["n_features"] == len(manifest["feature_names"])

    hop = rt.invoke_endpoint(EndpointName=endpoints["direct"], TargetContainerHostname=deploy.PREPROCESSOR_HOST,
                             ContentType="text/csv", Body=churn_schema.to_csv(ROWS))
    csv_payload = hop["Body"].read()
    assert hop["ContentType"] == manifest["hop_content_types"]["text/csv"]
    assert csv_payload.decode().count("\n") == len(ROWS)
    assert_close(churn_schema.decode_features(csv_payload, hop["ContentType"]), features)
    # CSV keeps float64 exactly (repr): the payload is bit-equal to the in-process features.
    assert np.array_equal(churn_schema.decode_features(csv_payload, hop["ContentType"]), features)

    # Whatever SageMaker sends an intermediate container (nothing, */*, or the client's Accept -- an open
    # question, contract §4.2), the payload is one the next container reads.
    hop = rt.invoke_endpoint(EndpointName=endpoints["direct"], TargetContainerHostname=deploy.PREPROCESSOR_HOST,
                             ContentType="text/csv", Accept="*/*", Body=churn_schema.to_csv(ROWS))
    assert hop["ContentType"] == manifest["hop_content_types"]["text/csv"]
    assert hop["Body"].read() == csv_payload

    hop = rt.invoke_endpoint(EndpointName=endpoints["direct"], TargetContainerHostname=deploy.PREPROCESSOR_HOST,
                             ContentType="text/csv", Accept="application/json", Body=churn_schema.to_csv(ROWS))
    json_payload = hop["Body"].read()
    assert hop["ContentType"] == manifest["hop_content_types"]["application/json"]
    assert set(json.loads(json_payload)) == {"instances"}
    assert np.array_equal(churn_schema.decode_features(json_payload, hop["ContentType"]), features)

    with pytest.raises(rt.exceptions.ModelError) as caught:
        rt.invoke_endpoint(EndpointName=endpoints["direct"], TargetContainerHostname=deploy.PREPROCESSOR_HOST,
                           ContentType="text/csv", Accept="application/x-npy", Body=churn_schema.to_csv(ROWS))
    assert caught.value.response["OriginalStatusCode"] == 406

    # The TensorFlow container takes the features as CSV with and without charset, and as JSON.
    want = expected_probabilities(trained, ROWS)
    for body, content_type in ((csv_payload, "text/csv; charset=utf-8"), (csv_payload, "text/csv"),
                               (csv_payload, "text/csv;charset=UTF-8"), (json_payload, "application/json"),
                               (json_payload, "application/json; charset=utf-8")):
        answer = rt.invoke_endpoint(EndpointName=endpoints["direct"], TargetContainerHostname=deploy.MODEL_HOST,
                                    ContentType=content_type, Accept="application/json", Body=body)
        assert_close(deploy.probabilities(answer["Body"].read()), want)


def test_malformed_rows_name_the_preprocessing_container(harness, endpoints):
    """A bad row fails in the first container, and the ModelError says which container and which row."""
    rt = harness.client("sagemaker-runtime")
    good = churn_schema.to_csv(deploy.SAMPLE_ROWS[:1]).strip()
    cases = [
        (f"{good}\n35,month-to-month,abc,70.0,card,1,north\n", "text/csv", 400,
         "row 2, column 'tenure_months': 'abc' is not a number"),
        (f"{good}\n35,month-to-month,1,70.0\n", "text/csv", 400, "row 2 has 4 fields; expected 7"),
        (json.dumps([{"age": 40, "colour": "red"}]), "application/json", 400, "row 1: unknown column(s) colour"),
        (good, "application/x-npy", 415, "Content-Type 'application/x-npy' is not supported"),
    ]
    for body, content_type, status, detail in cases:
        with pytest.raises(rt.exceptions.ModelError) as caught:
            rt.invoke_endpoint(EndpointName=endpoints["csv"], ContentType=content_type, Body=body)
        response = caught.value.response
        kind = "client" if status < 500 else "server"
        assert response["Error"]["Message"].startswith(
            f"Received {kind} error ({status}) from {deploy.PREPROCESSOR_HOST} with message"), response
        assert detail in response["Error"]["Message"], response
        assert response["OriginalStatusCode"] == status
        assert "Traceback" not in response["Error"]["Message"]


def test_mme_of_sklearn_models(harness, trained, endpoints):
    """Each per-region model of the MME answers what it answers in process."""
    rt = harness.client("sagemaker-runtime")
    table = churn_schema.parse_rows(ROWS)
    assert len(trained.mme_models) == 3
    for name, classifier in sorted(trained.mme_models.items()):
        answer = rt.invoke_endpoint(EndpointName=endpoints["mme"], TargetModel=name, ContentType="text/csv",
                                    Accept="application/json", Body=churn_schema.to_csv(ROWS))
        assert_close(json.loads(answer["Body"].read()), classifier.predict_proba(table)[:, 1])


def test_deploy_script_end_to_end(harness, trained):
    """deploy.py as a user runs it (--endpoint-url --mme): right answers, and nothing left behind."""
    sm = harness.client("sagemaker")
    seen: dict[str, Any] = {}

    def before_cleanup(results: deploy.Results) -> None:
        seen["results"] = results
        seen["endpoints"] = {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}

    args = deploy.build_parser().parse_args(["--artifacts", str(trained.out_dir), "--endpoint-url",
                                             harness.endpoint_url, "--mme", "--name", "script",
                                             "--poll-seconds", "0.25"])
    deploy.run(args, say=lambda _: None, before_cleanup=before_cleanup)
    results = seen["results"]
    assert set(results.endpoints) == {"pipeline", "direct", "mme"}
    assert set(results.endpoints.values()) <= seen["endpoints"]
    want = expected_probabilities(trained, deploy.SAMPLE_ROWS)
    assert_close(results.pipeline, want)
    assert_close(results.direct, want)
    assert results.hop_content_type == "text/csv; charset=utf-8"
    table = churn_schema.parse_rows(deploy.SAMPLE_ROWS)
    for name, classifier in trained.mme_models.items():
        assert_close(results.mme[name], classifier.predict_proba(table)[:, 1])
    # Cleaned up: none of its endpoints, configs or models remain.
    created = set(results.endpoints.values())
    assert not created & {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}
    assert not created & {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
    assert not created & {m["ModelName"] for m in sm.list_models()["Models"]}
