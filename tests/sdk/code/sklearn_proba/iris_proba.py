"""A scikit-learn serving script in the sagemaker-inference handler style: class probabilities as JSON."""

import io
import json
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, request_content_type):
    if request_content_type == "text/csv":
        text = request_body.decode("utf-8") if isinstance(request_body, bytes) else request_body
        return np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2)
    if request_content_type == "application/json":
        return np.asarray(json.loads(request_body), dtype=float)
    raise ValueError(f"iris_proba.py takes text/csv or application/json, not {request_content_type}")


def predict_fn(input_data, model):
    return model.predict_proba(input_data)


def output_fn(prediction, accept):
    return json.dumps({"probabilities": prediction.tolist()}), "application/json"
