"""``code/inference.py`` of the per-region churn classifiers served from the multi-model endpoint.

The artifact's ``model.joblib`` is a scikit-learn ``Pipeline`` (the same preprocessing, then a
logistic regression). Requests are the same raw rows as the pipeline's; the answer is the churn
probability of each row (the handler's codecs encode it per Accept: JSON list or CSV lines).
"""

from __future__ import annotations

from typing import Any

import churn_schema


def input_fn(data: Any, content_type: str) -> Any:
    """Raw rows -> the object table the pipeline takes."""
    return churn_schema.parse_request(data, content_type)


def predict_fn(data: Any, model: Any) -> Any:
    """Probability of the positive class (churn)."""
    return model.predict_proba(data)[:, 1]
