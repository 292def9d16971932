"""The decoding bounds at their edges: what is just inside passes, what is just outside gets its typed
4xx, and ``HandlerOptions.max_decoded_bytes`` reaches every codec and array conversion."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from handlers import codecs
from handlers.base import HandlerOptions
from handlers.errors import BadRequestError, PayloadTooLargeError
from handlers.limits import DEFAULT_MAX_DECODED_BYTES, MIB, DecodeLimits, max_decoded_bytes_for
from handlers.sklearn_handler import SklearnHandler, to_sklearn_input


def test_default_cap_is_sixteen_times_the_default_payload() -> None:
    assert DEFAULT_MAX_DECODED_BYTES == max_decoded_bytes_for(6 * MIB) == 96 * MIB
    assert HandlerOptions().decode_limits().max_bytes == 96 * MIB


def test_json_depth_ignores_brackets_in_strings_and_escapes() -> None:
    assert codecs.json_depth(json.dumps(["[[[", '\\"[', {"a": ["]]"]}])) == 3
    assert codecs.json_depth('["\\\\", [1]]') == 2


def test_json_depth_limit_is_inclusive() -> None:
    assert codecs.decode(b"[" * 100 + b"]" * 100, codecs.JSON) == json.loads("[" * 100 + "]" * 100)
    with pytest.raises(BadRequestError, match="101 levels deep; the limit is 100"):
        codecs.decode(b"[" * 101 + b"]" * 101, codecs.JSON)


def test_json_depth_counts_nesting_not_brackets() -> None:
    """Bodies with more brackets than the limit but shallow nesting are scanned and accepted (the
    bracket count only lets a body with few brackets skip the scan)."""
    rows = [[i] for i in range(300)]
    assert codecs.decode(json.dumps(rows).encode(), codecs.JSON) == rows
    assert codecs.decode(json.dumps(["[" * 300, "{" * 300]).encode(), codecs.JSON) == ["[" * 300, "{" * 300]
    with pytest.raises(BadRequestError, match="101 levels deep"):
        codecs.decode(json.dumps(rows + [[[0]] * 5]).encode()[:-1] + b"," + b"[" * 100 + b"]" * 100 + b"]",
                      codecs.JSON)


def test_integer_digits_limit() -> None:
    assert codecs.decode(b"[" + b"9" * 4300 + b"]", codecs.JSON)[0] == int("9" * 4300)
    with pytest.raises(BadRequestError, match="4300"):
        codecs.decode(b"[" + b"9" * 4301 + b"]", codecs.JSON)
    with pytest.raises(BadRequestError, match="the limit is 10"):
        codecs.parse_json("[" + "1" * 11 + "]", DecodeLimits(max_int_digits=10))


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (_npy(np.zeros(200)), codecs.NPY),
        (b"1,2,3,4\n" * 100, codecs.CSV),
    ],
)
def test_a_small_configured_cap_reaches_the_codecs(body: bytes, content_type: str) -> None:
    handler = SklearnHandler(HandlerOptions(max_decoded_bytes=1000))
    with pytest.raises(PayloadTooLargeError, match="limit is 1000 bytes") as info:
        handler.decode(body, content_type)
    assert info.value.status == 413
    assert SklearnHandler().decode(body, content_type).size in (200, 400)


def test_json_lists_become_arrays_within_the_cap() -> None:
    handler = SklearnHandler(HandlerOptions(max_decoded_bytes=1000))
    with pytest.raises(PayloadTooLargeError, match="200 values"):
        handler.decode(json.dumps([[1.5, 2.5]] * 100).encode(), codecs.JSON)


def test_strings_too_wide_for_fixed_width_become_objects() -> None:
    texts = ["a"] * 1000 + ["b" * 1000]
    small = to_sklearn_input(texts, DecodeLimits(max_bytes=1_000_000))
    assert small.dtype == object and small.shape == (1001,)
    assert to_sklearn_input(texts).dtype.kind == "U"  # 4 MB fixed-width: within the default cap


def test_npz_cap_counts_every_member() -> None:
    out = io.BytesIO()
    np.savez(out, a=np.zeros(100), b=np.zeros(100))
    with pytest.raises(PayloadTooLargeError, match="2 members declare"):
        codecs.decode(out.getvalue(), codecs.NPZ, DecodeLimits(max_bytes=1500))
    assert set(codecs.decode(out.getvalue(), codecs.NPZ)) == {"a", "b"}


def test_sparse_indptr_that_scipy_would_skip_is_refused() -> None:
    out = io.BytesIO()
    np.savez(out, format=np.array("csr"), shape=np.array([2, 3]), data=np.zeros(0),
             indices=np.zeros(0, np.int32), indptr=np.array([0, 5, 0], np.int32))  # fmt: skip
    with pytest.raises(BadRequestError, match="indptr"):
        codecs.decode(out.getvalue(), codecs.NPZ)


def test_huge_sparse_prediction_is_not_densified_for_json() -> None:
    import scipy.sparse

    matrix = scipy.sparse.csr_matrix((10**6, 10**6))
    body, content_type = codecs.encode(matrix, None, codecs.JSON)
    assert content_type == codecs.NPZ and body
