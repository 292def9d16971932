"""A scikit-learn user script that streams its answer: one JSON line per input row, each sent as soon
as it is predicted (docs/handlers.md, "Streaming"). Serve it as ``<model>/code/inference.py`` next to
a ``model.joblib``; the request is CSV, one row per line."""

import json
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(rows, model):
    # rows: the handler's decode of the CSV body, a 2-D array. Returning a generator streams the answer.
    for index, row in enumerate(rows):
        label = model.predict(row.reshape(1, -1))[0]
        yield json.dumps({"row": index, "label": label.item()}) + "\n"


def output_fn(stream, accept):
    return stream, "application/jsonlines"
