"""The churn table: its columns, a seeded generator, request parsing and the features' wire formats.

Shipped twice: imported by ``train.py`` / ``deploy.py`` / the tests as
``examples.sklearn_tf_pipeline.serving.churn_schema``, and copied into each scikit-learn artifact as
``code/churn_schema.py``, where ``code/inference.py`` imports it as ``churn_schema``. So training and
serving parse rows with the same code. Standard library and NumPy only: it runs in the serving image.

A raw row has seven fields, numbers and strings mixed, any of them possibly missing (empty CSV field
or JSON ``null``)::

    age,contract,tenure_months,monthly_charges,payment_method,support_calls,region
    42,month-to-month,5,89.9,electronic-check,3,north
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: (name, kind) in the order of a raw row.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("age", "numeric"),
    ("contract", "categorical"),
    ("tenure_months", "numeric"),
    ("monthly_charges", "numeric"),
    ("payment_method", "categorical"),
    ("support_calls", "numeric"),
    ("region", "categorical"),
)
NAMES: tuple[str, ...] = tuple(name for name, _ in COLUMNS)
NUMERIC_INDEX: list[int] = [i for i, (_, kind) in enumerate(COLUMNS) if kind == "numeric"]
CATEGORICAL_INDEX: list[int] = [i for i, (_, kind) in enumerate(COLUMNS) if kind == "categorical"]

CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = ("card", "bank-transfer", "electronic-check", "mailed-check")
REGIONS = ("north", "south", "east", "west")

#: Content-Types the preprocessor puts on the features it sends to the next container, per Accept.
#: CSV carries a charset parameter on purpose: the TensorFlow container must accept it (contract §4.2).
HOP_CSV = "text/csv; charset=utf-8"
HOP_JSON = "application/json"
HOP_CONTENT_TYPES: dict[str, str] = {"text/csv": HOP_CSV, "application/json": HOP_JSON}
#: Content-Types a raw-row request may have.
REQUEST_MEDIA_TYPES = ("text/csv", "application/json")


class RequestError(ValueError):
    """A request the preprocessor cannot serve; ``status_code`` is the HTTP status the server answers."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


# ---------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------
def make_dataset(n: int, seed: int = 0) -> tuple[list[list[Any]], np.ndarray]:
    """``n`` raw rows (Python values, ``None`` where missing) and their 0/1 churn labels.

    Churn follows a logistic model of the features (short contracts, short tenure, high charges,
    many support calls and electronic checks churn more), so a model has something to learn.
    """
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, size=n)
    contract = rng.choice(len(CONTRACTS), size=n, p=[0.55, 0.25, 0.20])
    tenure = np.clip(rng.gamma(2.0 + 3.0 * contract, 6.0), 0, 72).round()
    charges = np.clip(rng.normal(70, 25, size=n), 18, 130).round(2)
    payment = rng.choice(len(PAYMENT_METHODS), size=n, p=[0.3, 0.25, 0.3, 0.15])
    calls = rng.poisson(1.2 + 0.8 * (contract == 0), size=n)
    region = rng.choice(len(REGIONS), size=n)
    logit = (
        -0.8
        + 1.3 * (contract == 0)
        - 0.9 * (contract == 2)
        - 0.05 * tenure
        + 0.025 * (charges - 70)
        + 0.45 * calls
        + 0.7 * (payment == 2)
        - 0.015 * (age - 45)
        + np.array([0.0, 0.3, -0.2, 0.1])[region]
    )
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    rows: list[list[Any]] = []
    for i in range(n):
        rows.append([
            int(age[i]), CONTRACTS[contract[i]], int(tenure[i]), float(charges[i]),
            PAYMENT_METHODS[payment[i]], int(calls[i]), REGIONS[region[i]],
        ])
    # Missing values, as real exports have them: the preprocessor must impute them.
    for column, rate in (("monthly_charges", 0.04), ("support_calls", 0.03), ("payment_method", 0.05),
                         ("region", 0.02)):
        index = NAMES.index(column)
        for j in np.flatnonzero(rng.random(n) < rate):
            rows[int(j)][index] = None
    return rows, labels


def to_csv(rows: Sequence[Sequence[Any]], header: bool = False) -> str:
    """Raw rows as CSV text (missing values as empty fields)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(NAMES)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


# ---------------------------------------------------------------------------------------------------
# Requests -> table
# ---------------------------------------------------------------------------------------------------
def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    return isinstance(value, float) and math.isnan(value)


def _number(value: Any, row: int, name: str) -> float:
    if isinstance(value, bool):
        raise RequestError(f"row {row}, column {name!r}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"row {row}, column {name!r}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise RequestError(f"row {row}, column {name!r}: {value!r} is not a finite number")
    return number


def parse_rows(rows: Sequence[Any]) -> np.ndarray:
    """Raw rows (lists of 7 values, or objects keyed by column name) -> an ``object`` array of shape
    ``(n, 7)``: floats in numeric columns, strings in categorical ones, ``nan`` where missing.

    This is what the fitted preprocessor's integer column selectors take. ``RequestError`` (400)
    names the row (1-based) and the column of the first problem.
    """
    if not rows:
        raise RequestError("the request has no rows")
    table = np.empty((len(rows), len(COLUMNS)), dtype=object)
    for r, raw in enumerate(rows, start=1):
        if isinstance(raw, Mapping):
            unknown = sorted(set(map(str, raw)) - set(NAMES))
            if unknown:
                raise RequestError(
                    f"row {r}: unknown column(s) {', '.join(unknown)}; the columns are {', '.join(NAMES)}"
                )
            values = [raw.get(name) for name in NAMES]
        elif isinstance(raw, Sequence) and not isinstance(raw, (str, bytes)):
            values = list(raw)
            if len(values) != len(COLUMNS):
                raise RequestError(
                    f"row {r} has {len(values)} fields; expected {len(COLUMNS)}: {','.join(NAMES)}"
                )
        else:
            raise RequestError(f"row {r} is a {type(raw).__name__}; send a list of {len(COLUMNS)} fields or an object")
        for c, ((name, kind), value) in enumerate(zip(COLUMNS, values, strict=True)):
            if _missing(value):
                table[r - 1, c] = np.nan
            elif kind == "numeric":
                table[r - 1, c] = _number(value, r, name)
            elif isinstance(value, (dict, list)):
                raise RequestError(f"row {r}, column {name!r}: expected a string, got {type(value).__name__}")
            else:
                table[r - 1, c] = str(value).strip()
    return table


def media_type(header: str | None) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv`` (lower case, parameters dropped)."""
    return (header or "").split(";", 1)[0].strip().lower()


def parse_request(body: str | bytes, content_type: str | None) -> np.ndarray:
    """A request body of raw rows -> the table ``parse_rows`` makes.

    ``text/csv`` (a header row naming the columns is allowed) or ``application/json`` (a list of rows
    or of objects, optionally as ``{"instances": [...]}``); anything else is a 415.
    """
    kind = media_type(content_type)
    if kind not in REQUEST_MEDIA_TYPES:
        raise RequestError(
            f"Content-Type {content_type!r} is not supported; send raw rows as {' or '.join(REQUEST_MEDIA_TYPES)}",
            status_code=415,
        )
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if kind == "text/csv":
        rows: Any = [row for row in csv.reader(io.StringIO(text)) if row]
        if rows and [field.strip() for field in rows[0]] == list(NAMES):
            rows = rows[1:]
        return parse_rows(rows)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RequestError(f"the body is not valid JSON: {exc}") from None
    if isinstance(data, Mapping) and "instances" in data:
        data = data["instances"]
    if not isinstance(data, list):
        raise RequestError('JSON input must be a list of rows or {"instances": [...]}')
    return parse_rows(data)


# ---------------------------------------------------------------------------------------------------
# Features -> the next container
# ---------------------------------------------------------------------------------------------------
def _accepted(accept: str | None) -> list[str]:
    """Media types of an Accept header in preference order (q values, then position)."""
    ranked = []
    for position, part in enumerate((accept or "").split(",")):
        kind = media_type(part)
        if not kind:
            continue
        q = 1.0
        for param in part.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranked.append((-q, position, kind))
    return [kind for _, _, kind in sorted(ranked)]


def encode_features(features: Any, accept: str | None) -> tuple[str, str]:
    """The preprocessor's output as ``(body, Content-Type)`` for the container that reads it next.

    CSV: one row per line, floats written with ``repr`` so the next container reads the exact
    float64 values. JSON: ``{"instances": rows}``, TensorFlow Serving's row format. ``*/*`` and a
    missing Accept mean JSON (the server passes SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT when the
    request has none; that variable is how a pipeline picks the hop format).
    """
    matrix = np.asarray(features, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    for kind in _accepted(accept) or ["*/*"]:
        if kind == "text/csv":
            lines = (",".join(repr(float(v)) for v in row) for row in matrix)
            return "\n".join(lines) + "\n", HOP_CSV
        if kind in ("application/json", "*/*", "application/*"):
            return json.dumps({"instances": matrix.tolist()}), HOP_JSON
    raise RequestError(
        f"Accept {accept!r} cannot be served; the preprocessor answers {' or '.join(HOP_CONTENT_TYPES)}",
        status_code=406,
    )


def decode_features(body: str | bytes, content_type: str | None) -> np.ndarray:
    """The inverse of ``encode_features`` (for tests and the demo's look at the hop payload)."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if media_type(content_type) == "text/csv":
        return np.array([[float(v) for v in line.split(",")] for line in text.splitlines() if line],
                        dtype=np.float64)
    return np.asarray(json.loads(text)["instances"], dtype=np.float64)
