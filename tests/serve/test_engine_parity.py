"""User scripts written the way AWS's examples write them give identical responses on both engines.

Each script is served by the native engine and by the multi-model-server compatibility engine
(``python -m serve`` with ``SERVE_ENGINE=native`` / ``mms``); every request's status, Content-Type,
body bytes and returned custom attributes must be the same. The scripts cover the
sagemaker-inference contract: model_fn / input_fn / predict_fn / output_fn, transform_fn, with and
without the trailing ``context`` argument, and output_fn returning a ``(body, content_type)`` tuple.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.support.models import SklearnArtifact, sklearn_artifact, write_script
from tests.support.server import run_server

if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("PREREQUISITE MISSING: the parity test needs a Java runtime for SERVE_ENGINE=mms "
                "(apt-get install openjdk-17-jre-headless)", allow_module_level=True)
pytest.importorskip("mms", reason="PREREQUISITE MISSING: the parity test needs the mms extra "
                                  "(pip install 'servekit[mms]')")

# The AWS scikit-learn example: all four functions, no context, output_fn returns a string.
CLASSIC = """
import json
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, request_content_type):
    if request_content_type == "application/json":
        return np.array(json.loads(request_body))
    if request_content_type == "text/csv":
        return np.array([[float(v) for v in line.split(",")] for line in request_body.strip().splitlines()])
    raise ValueError("This model only supports application/json and text/csv input, not "
                     + str(request_content_type))


def predict_fn(input_data, model):
    return model.predict_proba(input_data)


def output_fn(prediction, content_type):
    return json.dumps({"probabilities": np.round(prediction, 6).tolist(), "accept": content_type})
"""

# output_fn returns (body, content_type); the CSV is built by hand.
TUPLE_OUTPUT = """
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(input_data, model):
    return model.predict(input_data)


def output_fn(prediction, accept):
    if accept == "text/csv":
        return "\\n".join(str(int(p)) for p in prediction), "text/csv"
    return {"labels": [int(p) for p in prediction]}, "application/json"
"""

# transform_fn, as the older examples write it: returns (body, accept).
TRANSFORM = """
import json
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def transform_fn(model, request_body, request_content_type, accept):
    if request_content_type != "application/json":
        raise ValueError("expected JSON, got " + str(request_content_type))
    prediction = model.predict(np.array(json.loads(request_body)))
    return json.dumps(prediction.tolist()), accept
"""

# Every function takes the trailing context (sagemaker-inference >= 1.7): reads system properties and
# request headers, sets a response header and the custom attributes.
WITH_CONTEXT = """
import json
import os

import joblib
import numpy as np


def model_fn(model_dir, context):
    assert context.system_properties["model_dir"] == model_dir
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, request_content_type, context):
    return np.array(json.loads(request_body))


def predict_fn(input_data, model, context):
    return model.predict(input_data)


def output_fn(prediction, accept, context):
    attributes = context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes")
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "echo=" + str(attributes))
    answer = {"labels": prediction.tolist(), "gpu": context.system_properties["gpu_id"],
              "model_dir": os.path.basename(context.system_properties["model_dir"])}
    return json.dumps(answer), "application/json"
"""

TRANSFORM_WITH_CONTEXT = """
import json


def model_fn(model_dir):
    return "ok"


def transform_fn(model, body, content_type, accept, context):
    context.set_response_content_type(0, "application/json")
    return json.dumps({"content_type": content_type, "accept": accept, "length": len(body),
                       "type": type(body).__name__})
"""

# Only model_fn: the sklearn handler's own decoders, predict and encoders do the rest.
MODEL_FN_ONLY = """
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
"""

SCRIPTS = {
    "classic": CLASSIC,
    "tuple_output": TUPLE_OUTPUT,
    "transform": TRANSFORM,
    "with_context": WITH_CONTEXT,
    "transform_with_context": TRANSFORM_WITH_CONTEXT,
    "model_fn_only": MODEL_FN_ONLY,
}


def requests_for(artifact: SklearnArtifact) -> list[tuple[str, bytes, dict[str, str]]]:
    rows = artifact.rows.tolist()
    csv = "\n".join(",".join(str(v) for v in row) for row in rows)
    return [
        ("json", json.dumps(rows).encode(), {"Content-Type": "application/json", "Accept": "application/json"}),
        ("json-no-accept", json.dumps(rows).encode(), {"Content-Type": "application/json"}),
        ("csv-any", csv.encode(), {"Content-Type": "text/csv", "Accept": "*/*"}),
        ("csv-to-csv", csv.encode(), {"Content-Type": "text/csv; charset=utf-8", "Accept": "text/csv"}),
        ("attributes", json.dumps(rows[:1]).encode(), {"Content-Type": "application/json",
                                                       "X-Amzn-SageMaker-Custom-Attributes": "trace=7"}),
        ("bad-json", b"{not json", {"Content-Type": "application/json"}),
        ("png", b"\x89PNG\r\n", {"Content-Type": "image/png"}),
    ]


def observed(response: httpx.Response) -> dict[str, object]:
    return {
        "status": response.status_code,
        "content_type": response.headers.get("content-type"),
        "body": response.content,
        "custom_attributes": response.headers.get("X-Amzn-SageMaker-Custom-Attributes"),
    }


def run_engine(engine: str, artifacts: dict[str, SklearnArtifact], single: Path) -> dict[tuple[str, str], dict]:
    results: dict[tuple[str, str], dict] = {}
    env = {"SERVE_ENGINE": engine, "SERVE_FRAMEWORK": "sklearn", "SAGEMAKER_MULTI_MODEL": "true"}
    with run_server(env) as server:
        for name, artifact in artifacts.items():
            loaded = httpx.post(server.url + "/models", json={"model_name": name, "url": str(artifact.path)},
                                timeout=120)
            assert loaded.status_code == 200, (engine, name, loaded.text)
            for label, body, headers in requests_for(artifact):
                answer = httpx.post(f"{server.url}/models/{name}/invoke", content=body, headers=headers, timeout=60)
                results[(name, label)] = observed(answer)
    single_env = {"SERVE_ENGINE": engine, "SERVE_FRAMEWORK": "sklearn", "SERVE_MODEL_DIR": str(single)}
    with run_server(single_env) as server:
        for label, body, headers in requests_for(artifacts["with_context"]):
            answer = httpx.post(server.url + "/invocations", content=body, headers=headers, timeout=60)
            results[("single:with_context", label)] = observed(answer)
    return results


def test_aws_style_scripts_answer_identically_on_both_engines(tmp_path: Path) -> None:
    artifacts = {}
    for name, script in SCRIPTS.items():
        artifact = sklearn_artifact(tmp_path / name / "model", seed=3)
        write_script(artifact.path, script)
        artifacts[name] = artifact
    single = tmp_path / "single" / "model"
    shutil.copytree(artifacts["with_context"].path, single)

    native = run_engine("native", artifacts, single)
    mms = run_engine("mms", artifacts, single)

    # The scripts really ran (a parity test in which both engines fail alike proves nothing).
    assert native[("classic", "json")]["status"] == 200
    assert json.loads(native[("classic", "json")]["body"])["accept"] == "application/json"
    assert json.loads(native[("transform", "json")]["body"]) == artifacts["transform"].expected
    assert native[("tuple_output", "csv-to-csv")]["content_type"].startswith("text/csv")
    assert native[("with_context", "attributes")]["custom_attributes"] == "echo=trace=7"
    assert native[("single:with_context", "json")]["status"] == 200
    assert native[("model_fn_only", "png")]["status"] == 415

    differences = {key: (native[key], mms[key]) for key in native if native[key] != mms.get(key)}
    assert not differences, "\n".join(f"{key}:\n  native {n}\n  mms    {m}" for key, (n, m) in differences.items())
