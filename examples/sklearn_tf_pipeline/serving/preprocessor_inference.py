"""``code/inference.py`` of the preprocessor artifact (scikit-learn container, first in the pipeline).

The artifact's ``model.joblib`` is a fitted ``ColumnTransformer``. This script is the
sagemaker-inference contract (it runs unchanged on AWS's scikit-learn container too):

* ``input_fn``: raw rows as CSV or JSON, numbers and strings mixed, missing fields allowed, parsed
  by ``churn_schema`` (shipped beside this file) into the table the transformer was fitted on;
  a malformed row is a 400 naming the row and column.
* ``predict_fn``: ``transform`` (the default handler would too, but only for tables it parses).
* ``output_fn``: the feature matrix for the next container: ``text/csv; charset=utf-8`` or
  ``application/json`` (``{"instances": ...}``). In a serial pipeline this container gets no Accept
  from the client, so ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` on this container picks the format.
"""

from __future__ import annotations

from typing import Any

import churn_schema


def input_fn(data: Any, content_type: str) -> Any:
    """Raw rows -> the object table the ColumnTransformer takes."""
    return churn_schema.parse_request(data, content_type)


def predict_fn(data: Any, model: Any) -> Any:
    """Scale, impute and one-hot encode."""
    return model.transform(data)


def output_fn(prediction: Any, accept: str) -> tuple[str, str]:
    """Features as CSV or JSON, with the Content-Type the next container reads them by."""
    return churn_schema.encode_features(prediction, accept)
