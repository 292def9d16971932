"""Row parsing and hop encoding of the churn example (``serving/churn_schema.py``), without a server."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from examples.sklearn_tf_pipeline.serving import churn_schema as schema

ROW = [42, "month-to-month", 3, 89.9, "electronic-check", 4, "north"]


def test_csv_json_and_records_parse_to_the_same_table():
    rows = [ROW, [35, "one-year", 1, None, None, 2, ""]]
    from_csv = schema.parse_request(schema.to_csv(rows), "text/csv; charset=utf-8")
    from_header_csv = schema.parse_request(schema.to_csv(rows, header=True).encode(), "text/csv")
    from_json = schema.parse_request(json.dumps({"instances": rows}), "application/json")
    records = [dict(zip(schema.NAMES, row, strict=True)) for row in rows]
    from_records = schema.parse_request(json.dumps(records), "application/json")
    for table in (from_header_csv, from_json, from_records):
        assert table.shape == (2, 7)
        for a, b in zip(from_csv.ravel(), table.ravel(), strict=True):
            assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))
    assert from_csv[0].tolist() == [42.0, "month-to-month", 3.0, 89.9, "electronic-check", 4.0, "north"]
    # Missing numbers and strings are NaN, which the preprocessor's imputers fill.
    assert math.isnan(from_csv[1, 3]) and math.isnan(from_csv[1, 4]) and math.isnan(from_csv[1, 6])


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [
    ("42,month-to-month,x,1,card,1,north", "text/csv", 400, "row 1, column 'tenure_months': 'x' is not a number"),
    ("42,month-to-month,inf,1,card,1,north", "text/csv", 400, "is not a finite number"),
    ("1,2,3", "text/csv", 400, "row 1 has 3 fields; expected 7"),
    ("", "text/csv", 400, "the request has no rows"),
    ('[{"age": 1, "colour": "red"}]', "application/json", 400, "unknown column(s) colour"),
    ('[[true, "a", 1, 1, "b", 1, "c"]]', "application/json", 400, "True is not a number"),
    ("{not json", "application/json", 400, "not valid JSON"),
    ("42", "application/x-npy", 415, "is not supported"),
])
def test_bad_requests_name_the_problem(body, content_type, status, message):
    with pytest.raises(schema.RequestError) as caught:
        schema.parse_request(body, content_type)
    assert caught.value.status_code == status
    assert message in str(caught.value)


def test_features_round_trip_exactly_in_both_hop_formats():
    features = np.random.default_rng(0).normal(size=(3, 5))
    body, content_type = schema.encode_features(features, None)
    assert content_type == schema.HOP_JSON
    assert np.array_equal(schema.decode_features(body, content_type), features)
    body, content_type = schema.encode_features(features, "application/json;q=0.5, text/csv")
    assert content_type == "text/csv; charset=utf-8"
    assert np.array_equal(schema.decode_features(body, content_type), features)  # repr keeps float64 exact
    with pytest.raises(schema.RequestError) as caught:
        schema.encode_features(features, "application/x-npy")
    assert caught.value.status_code == 406


def test_generated_data_is_seeded_and_has_missing_values():
    rows, labels = schema.make_dataset(500, seed=3)
    again, labels_again = schema.make_dataset(500, seed=3)
    assert rows == again and np.array_equal(labels, labels_again)
    assert 0.2 < labels.mean() < 0.8
    assert any(row[schema.NAMES.index("payment_method")] is None for row in rows)
    assert {row[1] for row in rows} == set(schema.CONTRACTS)
