"""First stage of a serial pipeline: standardise CSV rows with a fitted StandardScaler, answer CSV."""

import io
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, request_content_type):
    if request_content_type != "text/csv":
        raise ValueError(f"scale_rows.py takes text/csv, not {request_content_type}")
    text = request_body.decode("utf-8") if isinstance(request_body, bytes) else request_body
    return np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2)


def predict_fn(input_data, model):
    return model.transform(input_data)


def output_fn(prediction, accept):
    out = io.StringIO()
    np.savetxt(out, prediction, delimiter=",", fmt="%.10g")
    return out.getvalue(), "text/csv"
