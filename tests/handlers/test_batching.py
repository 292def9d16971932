"""``ServedModel.invoke_batch`` (docs/handlers.md, "Batching"): what the model and the script see."""

from __future__ import annotations

import json
from pathlib import Path

from handlers.base import Request, Response
from handlers.errors import HandlerError
from handlers.model import ServedModel
from handlers.sklearn_handler import SklearnHandler
from tests.support.models import sklearn_artifact

#: Records the rows of every call the model sees into calls.jsonl beside the model.
RECORDING_MODEL = """
import json, os
from pathlib import Path
import joblib

class Recording:
    def __init__(self, model, log):
        self.model, self.log = model, log
    def predict(self, rows):
        with open(self.log, "a") as out:
            out.write(json.dumps(len(rows)) + "\\n")
        return self.model.predict_proba(rows)
    def predict_proba(self, rows):
        return self.predict(rows)

def model_fn(model_dir):
    return Recording(joblib.load(Path(model_dir) / "model.joblib"), Path(model_dir) / "calls.jsonl")
"""
#: Adds a predict_fn: AWS's toolkit calls it once per request, and so does servekit.
PREDICT_FN = """
def predict_fn(data, model):
    return model.predict_proba(data)
"""


def _served(tmp_path: Path, code: str) -> tuple[ServedModel, Path]:
    artifact = sklearn_artifact(tmp_path / "m", code=code)
    return ServedModel.load(SklearnHandler(), str(artifact.path)), artifact.path / "calls.jsonl"


def _csv(*rows: str) -> Request:
    return Request(("\n".join(rows)).encode(), "text/csv", "application/json")


GOOD = ["5.1,3.5,1.4,0.2", "6.0,2.2,5.0,1.5\n7.7,3.0,6.1,2.3", "4.9,3.0,1.4,0.2"]


def test_the_default_pipeline_predicts_joinable_requests_in_one_call_with_answers_in_order(tmp_path: Path) -> None:
    served, calls = _served(tmp_path, RECORDING_MODEL)
    alone = [served.invoke(_csv(rows)) for rows in GOOD]
    calls.unlink()
    batch = [_csv(GOOD[0]), _csv("1,2,3"), _csv(GOOD[1]), _csv("a,b,c,d"), _csv(GOOD[2])]
    answers = served.invoke_batch(batch)
    good = [answers[0], answers[2], answers[4]]
    assert all(isinstance(a, Response) for a in good)
    assert [a.body for a in good if isinstance(a, Response)] == [a.body for a in alone]
    assert [isinstance(a, HandlerError) and a.status for a in (answers[1], answers[3])] == [400, 400]
    # one call for the four joined rows, then the 3-column and the text request each alone
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [4, 1, 1]


def test_a_user_predict_fn_sees_one_request_at_a_time_as_in_aws_toolkit(tmp_path: Path) -> None:
    served, calls = _served(tmp_path, RECORDING_MODEL + PREDICT_FN)
    answers = served.invoke_batch([_csv(rows) for rows in GOOD])
    assert all(isinstance(a, Response) for a in answers)
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [1, 2, 1]
