"""Batch transform's record handling (harness.transform_records): splitting, packing, JSONPath, joins."""

from __future__ import annotations

import pytest

from harness.transform_records import (
    RecordError,
    assemble,
    compile_path,
    data_processing,
    mini_batches,
    select,
    split_lines,
    whole_object,
)


def test_split_lines_across_chunk_boundaries_and_bounds():
    chunks = [b"1,2\n3,", b"4\n5,6", b"\n"]
    assert list(split_lines(chunks, 100)) == [b"1,2", b"3,4", b"5,6"]
    assert list(split_lines([b"a\nb"], 100)) == [b"a", b"b"]  # no final newline
    with pytest.raises(RecordError, match="MaxPayloadInMB"):
        list(split_lines([b"x" * 11 + b"\n"], 10))
    with pytest.raises(RecordError, match="MaxPayloadInMB"):
        list(split_lines([b"x" * 6, b"x" * 6], 10))  # a long line is refused before it is complete
    with pytest.raises(RecordError):
        list(whole_object([b"x" * 6, b"x" * 6], 10))


def test_mini_batches_single_and_multi_record():
    records = [b"aaaa", b"bbbb", b"cccc", b"dd"]
    assert list(mini_batches(records, multi_record=False, max_bytes=100)) == [[r] for r in records]
    # 4 + 1 + 4 = 9 fits 10; a third record would make 14.
    assert list(mini_batches(records, multi_record=True, max_bytes=10)) == [[b"aaaa", b"bbbb"], [b"cccc", b"dd"]]
    assert list(mini_batches(records, multi_record=True, max_bytes=100)) == [records]


def test_assemble_with_line_or_none():
    assert assemble(b"1\n2", True) == b"1\n2\n"
    assert assemble(b"1\n2\n", True) == b"1\n2\n"
    assert assemble(b"1\n2", False) == b"1\n2"


@pytest.mark.parametrize(("expression", "value", "expected"), [
    ("$", [1, 2, 3], [1, 2, 3]),
    ("$[1:]", ["id", "a", "b"], ["a", "b"]),
    ("$[0,-1]", ["id", "a", "b"], ["id", "b"]),
    ("$[0,2:]", [0, 1, 2, 3], [0, 2, 3]),
    ("$[-1]", [0, 1, 2], 2),
    ("$.features", {"features": [1, 2], "id": 7}, [1, 2]),
    ("$.a.b", {"a": {"b": 5}}, 5),
    ("$['id','SageMakerOutput']", {"id": 1, "x": 2, "SageMakerOutput": 3}, {"id": 1, "SageMakerOutput": 3}),
    ("$['x']", {"x": 2}, 2),
    ("$.*", {"a": 1, "b": 2}, [1, 2]),
    ("$[*]", [4, 5], [4, 5]),
])
def test_jsonpath_subset(expression, value, expected):
    assert select(compile_path(expression), value, expression) == expected


@pytest.mark.parametrize("expression", ["$..a", "$[?(@.a)]", "features", "$.a[0:2].b", "$['a','b'].c",
                                        "$[1:2:3]", "$.a b"])
def test_jsonpath_outside_the_subset_is_refused_naming_it(expression):
    with pytest.raises(ValueError, match="JSONPath expression"):
        compile_path(expression)


def test_jsonpath_on_a_record_without_the_part_is_a_record_error():
    with pytest.raises(RecordError, match="index 5"):
        select(compile_path("$[5]"), [1, 2], "$[5]")
    with pytest.raises(RecordError, match="'missing'"):
        select(compile_path("$.missing"), {"a": 1}, "$.missing")


def test_csv_join_and_filters_per_record():
    processing = data_processing({"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
                                 "text/csv", "text/csv", split_line=True)
    records = [b"id1,1,2", b"id2,3,4"]
    assert processing.filter_input(records) == [b"1,2", b"3,4"]
    assert processing.process_output(records, b"3\n7\n") == b"id1,3\nid2,7\n"
    with pytest.raises(RecordError, match="1 line"):
        processing.process_output(records, b"3\n")


def test_json_join_puts_the_prediction_under_sagemaker_output():
    processing = data_processing({"InputFilter": "$.features", "JoinSource": "Input",
                                  "OutputFilter": "$['id','SageMakerOutput']"},
                                 "application/jsonlines", "application/jsonlines", split_line=True)
    records = [b'{"id": 1, "features": [1, 2]}']
    assert processing.filter_input(records) == [b"[1,2]"]
    assert processing.process_output(records, b'{"p": 3}') == b'{"id":1,"SageMakerOutput":{"p":3}}\n'


@pytest.mark.parametrize(("params", "content_type", "split", "reason"), [
    ({"InputFilter": "$..x"}, "text/csv", True, "JSONPath"),
    ({"JoinSource": "Input"}, "text/csv", False, "SplitType Line"),
    ({"JoinSource": "Input"}, "application/x-npy", True, "ContentType"),
])
def test_data_processing_refusals_name_the_option(params, content_type, split, reason):
    with pytest.raises(ValueError, match=reason):
        data_processing(params, content_type, "text/csv", split_line=split)
