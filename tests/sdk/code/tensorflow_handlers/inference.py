"""A TensorFlow Serving pre/post-processing script (input_handler / output_handler): CSV rows in, the
predicted class and its scores out."""

import json


def input_handler(data, context):
    if context.request_content_type != "text/csv":
        raise ValueError(f"this model takes text/csv, not {context.request_content_type}")
    rows = [[float(cell) for cell in line.split(",")] for line in data.read().decode("utf-8").splitlines() if line]
    return json.dumps({"instances": rows})


def output_handler(response, context):
    if response.status_code != 200:
        raise ValueError(response.content.decode("utf-8"))
    scores = json.loads(response.content)["predictions"]
    classes = [max(range(len(row)), key=row.__getitem__) for row in scores]
    return json.dumps({"classes": classes, "scores": scores}), "application/json"
