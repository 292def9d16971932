"""The /models API's argument checks (serve.app), unit by unit: each refusal is one line naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from serve.app import MAX_INITIAL_WORKERS, BadArgument, ascii_number, load_arguments, printable


@pytest.mark.parametrize("text", ["²", "٣", "１", "", "-1", "1.0", " 1", "9" * 19])
def test_only_short_ascii_digit_strings_are_numbers(text: str) -> None:
    assert ascii_number(text) is None


def test_ascii_digits_are_numbers() -> None:
    assert ascii_number("0") == 0 and ascii_number("0042") == 42


@pytest.mark.parametrize(("spec", "field"), [
    ({"model_name": "a", "url": "/m", "initial_workers": True}, "initial_workers"),
    ({"model_name": "a", "url": "/m", "initial_workers": 0}, "initial_workers"),
    ({"model_name": "a", "url": "/m", "initial_workers": MAX_INITIAL_WORKERS + 1}, "initial_workers"),
    ({"model_name": "a", "url": "/m", "initial_workers": "²"}, "initial_workers"),
    ({"model_name": "a", "url": "/m", "initial_workers": 1.5}, "initial_workers"),
    ({"model_name": "a\nforged log line", "url": "/m"}, "model_name"),
    ({"model_name": "a/b", "url": "/m"}, "model_name"),
    ({"model_name": "", "url": "/m"}, "model_name"),
    ({"model_name": "x" * 257, "url": "/m"}, "model_name"),
    ({"model_name": 7, "url": "/m"}, "model_name"),
    ({"model_name": "a", "url": "/m\x00"}, "url"),
    ({"model_name": "a", "url": ""}, "url"),
])
def test_refusals_name_the_field_in_one_line(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(BadArgument) as info:
        load_arguments(spec)
    assert field in str(info.value) and "\n" not in str(info.value)


def test_valid_arguments_pass_unchanged() -> None:
    assert load_arguments({"model_name": "a.b-c_1 é", "url": "/m"}) == ("a.b-c_1 é", "/m", None)
    assert load_arguments({"model_name": "a", "url": "/m", "initial_workers": "2"}) == ("a", "/m", 2)
    assert load_arguments({"model_name": "a", "url": "/m", "initial_workers": MAX_INITIAL_WORKERS})[2] == 64


def test_log_fields_are_escaped() -> None:
    assert printable("/models/a\nINFO forged") == "/models/a\\nINFO forged"
    assert printable("/models/a") == "/models/a"
