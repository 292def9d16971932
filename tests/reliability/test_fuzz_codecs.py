"""Hypothesis fuzzing of every codec through ``ServedModel.invoke`` (scikit-learn handler, an identity
model): arbitrary bytes under every content type, mutated valid bodies, and encode/decode round trips.
Only success or a ``HandlerError`` with a 4xx status may come out, never another exception.

Budget: ``FUZZ_EXAMPLES`` examples per test (200, derandomized, so CI is reproducible);
``SERVEKIT_RELIABILITY_LONG=1`` raises it to 5000 with random seeds.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from handlers import codecs
from handlers.base import Request
from handlers.errors import HandlerError
from handlers.model import ServedModel
from handlers.sklearn_handler import SklearnHandler
from tests.reliability.models import write_identity

LONG = os.environ.get("SERVEKIT_RELIABILITY_LONG") == "1"
FUZZ_EXAMPLES = 5000 if LONG else 200
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=not LONG,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Every media type a codec answers to, with parameters clients send.
CONTENT_TYPES = [
    *(mt for codec in codecs.REGISTRY._codecs for mt in codec.media_types()),
    "text/csv; header=present",
    "application/json; charset=utf-16",
    "text/csv; charset=latin-1",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    return ServedModel.load(SklearnHandler(), str(write_identity(tmp_path_factory.mktemp("identity") / "m")))


def invoke(served: ServedModel, body: bytes, content_type: str, accept: str | None = None) -> bytes | None:
    """The response body, or None after a 4xx; any other outcome fails the test."""
    try:
        return served.invoke(Request(body, content_type, accept)).body
    except HandlerError as exc:
        assert 400 <= exc.status < 500, f"{exc.status}: {exc.message}"
        assert "\n" not in exc.message
        return None


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
    return out.getvalue()


ARRAYS = hnp.arrays(
    dtype=st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes(), hnp.unicode_string_dtypes()),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=6),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=40,
)


def _mutate(body: bytes, data: st.DataObject) -> bytes:
    """``body`` with a few bytes overwritten, inserted or cut off."""
    raw = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        if not raw:
            break
        where = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["set", "insert", "truncate"]))
        if action == "set":
            raw[where] = data.draw(st.integers(0, 255))
        elif action == "insert":
            raw[where:where] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[where:]
    return bytes(raw)


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@FUZZ
@given(body=st.binary(max_size=512))
def test_arbitrary_bytes_get_success_or_4xx(served: ServedModel, content_type: str, body: bytes) -> None:
    invoke(served, body, content_type)


@FUZZ
@given(array=ARRAYS, data=st.data())
def test_mutated_npy_and_npz_get_success_or_4xx(served: ServedModel, array: np.ndarray, data: st.DataObject) -> None:
    invoke(served, _mutate(_npy(array), data), codecs.NPY)
    invoke(served, _mutate(_npz({"x": array, "y": array[..., :1] if array.ndim else array}), data), codecs.NPZ)


@FUZZ
@given(value=JSON_VALUES, data=st.data())
def test_json_values_and_lines_get_success_or_4xx(served: ServedModel, value: object, data: st.DataObject) -> None:
    text = json.dumps(value)
    invoke(served, text.encode(), codecs.JSON)
    invoke(served, _mutate(text.encode(), data), codecs.JSON)
    invoke(served, (text + "\n" + text).encode(), codecs.JSONLINES)


@FUZZ
@given(rows=st.lists(st.lists(st.text(max_size=6) | st.floats().map(str), min_size=1, max_size=4), max_size=6))
def test_csv_tables_get_success_or_4xx(served: ServedModel, rows: list[list[str]]) -> None:
    text = "\n".join(",".join(json.dumps(cell) if "," in cell else cell for cell in row) for row in rows)
    invoke(served, text.encode(), codecs.CSV)
    invoke(served, text.encode(), "text/csv; header=present")


@FUZZ
@given(
    shape=st.tuples(st.integers(0, 6), st.integers(0, 6)),
    data=st.data(),
)
def test_sparse_matrices_valid_or_corrupted_get_success_or_4xx(
    served: ServedModel, shape: tuple[int, int], data: st.DataObject
) -> None:
    import scipy.sparse

    fmt = data.draw(st.sampled_from(["csr", "csc", "coo"]))
    matrix = scipy.sparse.random(*shape, density=0.5, format=fmt, random_state=data.draw(st.integers(0, 99)))
    arrays = {key: np.asarray(value) for key, value in np.load(io.BytesIO(_save_sparse(matrix))).items()}
    key = data.draw(st.sampled_from(sorted(arrays)))
    if arrays[key].size and arrays[key].dtype.kind in "iuf":
        arrays[key] = arrays[key].astype(np.int64 if arrays[key].dtype.kind in "iu" else np.float64)
        arrays[key].flat[data.draw(st.integers(0, arrays[key].size - 1))] = data.draw(st.integers(-(2**40), 2**40))
    out = io.BytesIO()
    np.savez(out, **arrays)  # type: ignore[arg-type]
    invoke(served, out.getvalue(), codecs.NPZ)


def _save_sparse(matrix: object) -> bytes:
    import scipy.sparse

    out = io.BytesIO()
    scipy.sparse.save_npz(out, matrix)  # type: ignore[arg-type]
    return out.getvalue()


NUMERIC_2D = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.int64]),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=5),
    elements={"allow_nan": False, "allow_infinity": False, "min_value": -1e6, "max_value": 1e6},
)


@pytest.mark.parametrize("media_type", [codecs.JSON, codecs.CSV, codecs.NPY, codecs.NPZ, codecs.JSONLINES])
@FUZZ
@given(array=NUMERIC_2D)
def test_round_trip_through_invoke(served: ServedModel, media_type: str, array: np.ndarray) -> None:
    codec = codecs.REGISTRY.get(media_type)
    assert codec is not None
    body = invoke(served, codec.encode(array), media_type, accept=media_type)
    assert body is not None
    back = codec.decode(body, {})
    np.testing.assert_allclose(np.asarray(back, dtype=np.float64).reshape(array.shape), array)


def test_profile_budget_is_what_ci_expects() -> None:
    assert FUZZ.max_examples == (5000 if LONG else 200)
    assert Path(__file__).parent.name == "reliability"
