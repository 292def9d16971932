"""Batch transform (docs/sagemaker-contract.md §9): the SAGEMAKER_* batch variables and
GET /execution-parameters, against the real server in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serve.settings import Settings, SettingsError
from tests.support.models import SklearnArtifact
from tests.support.server import run_server

BATCH = {"SERVE_FRAMEWORK": "sklearn", "SAGEMAKER_BATCH": "true"}


def single(engine: str, model_dir: Path, **extra: str) -> dict[str, str]:
    return {**BATCH, "SERVE_ENGINE": engine, "SERVE_MODEL_DIR": str(model_dir), **extra}


def csv_rows(iris: SklearnArtifact) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in iris.rows)


def test_execution_parameters_default_to_the_workers_and_the_payload_limit(iris: SklearnArtifact) -> None:
    with run_server(single("native", iris.path, SAGEMAKER_MODEL_SERVER_WORKERS="3")) as server:
        answer = httpx.get(server.url + "/execution-parameters")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"MaxConcurrentTransforms": 3, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}


def test_execution_parameters_repeat_the_jobs_values(iris: SklearnArtifact) -> None:
    env = single("native", iris.path, SAGEMAKER_BATCH_STRATEGY="SINGLE_RECORD",
                 SAGEMAKER_MAX_CONCURRENT_TRANSFORMS="8", SAGEMAKER_MAX_PAYLOAD_IN_MB="1")
    with run_server(env) as server:
        answer = httpx.get(server.url + "/execution-parameters")
        assert answer.json() == {"MaxConcurrentTransforms": 8, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 1}
        invoked = httpx.post(server.url + "/invocations", content=csv_rows(iris), headers={"Content-Type": "text/csv"})
        assert invoked.status_code == 200, invoked.text
        too_large = httpx.post(server.url + "/invocations", content=b"1," * (600 * 1024),
                               headers={"Content-Type": "text/csv"})
        assert too_large.status_code == 413


def test_execution_parameters_are_404_in_multi_model_mode() -> None:
    with run_server({**BATCH, "SERVE_ENGINE": "native", "SAGEMAKER_MULTI_MODEL": "true"}) as server:
        answer = httpx.get(server.url + "/execution-parameters")
        assert answer.status_code == 404
        assert answer.json()["code"] == 404 and "single-model mode" in answer.json()["message"]


@pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"),
                    reason="PREREQUISITE MISSING: SERVE_ENGINE=mms needs a Java runtime")
def test_mms_serves_a_batch_job_without_execution_parameters(iris: SklearnArtifact) -> None:
    """multi-model-server's Java front end serves only its own routes: /execution-parameters is not
    found there, so SageMaker uses the job's values (docs/engines.md); the payload limit still applies."""
    env = single("mms", iris.path, SAGEMAKER_BATCH_STRATEGY="MULTI_RECORD", SAGEMAKER_MAX_PAYLOAD_IN_MB="1")
    with run_server(env) as server:
        assert httpx.get(server.url + "/execution-parameters").status_code == 404
        invoked = httpx.post(server.url + "/invocations", content=csv_rows(iris), headers={"Content-Type": "text/csv"})
        assert invoked.status_code == 200, invoked.text
        too_large = httpx.post(server.url + "/invocations", content=b"1," * (600 * 1024),
                               headers={"Content-Type": "text/csv"})
        assert too_large.status_code == 413


@pytest.mark.parametrize(("variable", "value", "accepted"), [
    ("SAGEMAKER_BATCH", "maybe", "expected true or false"),
    ("SAGEMAKER_BATCH_STRATEGY", "EVERYTHING", "expected SINGLE_RECORD or MULTI_RECORD"),
    ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "101", "expected an integer 0-100"),
    ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "-1", "expected an integer 0-100"),
])
def test_invalid_batch_variables_are_refused(variable: str, value: str, accepted: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: value})
    assert str(info.value) == f"{variable}={value!r} is invalid: {accepted}"


def test_batch_values_are_parsed_and_zero_transforms_means_unset() -> None:
    settings = Settings.from_env({"SAGEMAKER_BATCH": "true", "SAGEMAKER_BATCH_STRATEGY": "single_record",
                                  "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "0"})
    assert (settings.batch, settings.batch_strategy, settings.max_concurrent_transforms) == (
        True, "SINGLE_RECORD", None)


def test_an_invalid_batch_variable_stops_the_server_with_exit_code_2() -> None:
    env = {**os.environ, "SAGEMAKER_BATCH_STRATEGY": "EVERYTHING"}
    result = subprocess.run([sys.executable, "-m", "serve"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "serve: error: SAGEMAKER_BATCH_STRATEGY='EVERYTHING' is invalid: expected SINGLE_RECORD or MULTI_RECORD"]
