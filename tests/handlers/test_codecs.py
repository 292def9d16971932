"""Codec registry: round trips, negotiation, and the 400/406/415 answers for bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from handlers import codecs
from handlers.errors import BadRequestError, UnsupportedAcceptError, UnsupportedContentTypeError
from handlers.limits import DEFAULT_LIMITS
from tests.handlers.helpers import npy, npz

# ---- media types and Accept -------------------------------------------------------------------------


def test_parse_media_type_lowercases_and_reads_parameters() -> None:
    assert codecs.parse_media_type('Text/CSV; charset="UTF-8"; header=present') == (
        "text/csv",
        {"charset": "UTF-8", "header": "present"},
    )
    assert codecs.parse_media_type(None) == ("", {})


def test_parse_accept_orders_by_quality_then_position_and_drops_q0() -> None:
    assert codecs.parse_accept("text/csv;q=0.5, application/json, application/x-npy;q=0") == [
        "application/json",
        "text/csv",
    ]
    assert codecs.parse_accept("text/csv, application/json") == ["text/csv", "application/json"]


@pytest.mark.parametrize("accept", [None, "", "*/*", " */* "])
def test_missing_or_wildcard_accept_uses_default(accept: str | None) -> None:
    body, ctype = codecs.encode(np.array([1.0, 2.0]), accept, default_accept="text/csv")
    assert ctype == "text/csv"
    assert body == b"1.0\n2.0\n"


def test_comma_separated_accept_picks_first_supported() -> None:
    body, ctype = codecs.encode([1, 2], "image/png, text/csv, application/json", "application/json")
    assert ctype == "text/csv"
    assert body == b"1\n2\n"


def test_accept_with_parameters_and_range() -> None:
    assert codecs.encode([1], "application/json; charset=utf-8", "text/csv")[1] == "application/json"
    assert codecs.encode([1], "application/*", "text/csv")[1] == "application/json"
    # The range matches the default first when it can.
    assert codecs.encode([1], "application/*", "application/x-npy")[1] == "application/x-npy"


def test_accept_skips_types_that_cannot_carry_the_prediction() -> None:
    # A mapping cannot be CSV; JSON is next in line.
    body, ctype = codecs.encode({"a": [1, 2]}, "text/csv, application/json", "application/json")
    assert (json.loads(body), ctype) == ({"a": [1, 2]}, "application/json")


def test_unsupported_accept_is_406_naming_supported_types() -> None:
    with pytest.raises(UnsupportedAcceptError) as info:
        codecs.encode([1], "image/png", "application/json")
    assert info.value.status == 406
    assert "application/json" in info.value.message and "image/png" in info.value.message


def test_prediction_that_no_accepted_type_can_carry_is_406() -> None:
    with pytest.raises(UnsupportedAcceptError) as info:
        codecs.encode(np.zeros((2, 2, 2)), "text/csv", "application/json")
    assert info.value.status == 406
    assert "3-D" in info.value.message


@pytest.mark.parametrize("ctype", ["image/png", "application/octet-stream", "text/plain"])
def test_unsupported_content_type_is_415(ctype: str) -> None:
    with pytest.raises(UnsupportedContentTypeError) as info:
        codecs.decode(b"x", ctype)
    assert info.value.status == 415
    assert ctype in info.value.message and "text/csv" in info.value.message


def test_missing_content_type_is_415() -> None:
    with pytest.raises(UnsupportedContentTypeError):
        codecs.decode(b"[1]", None)


@pytest.mark.parametrize("ctype", ["application/json", "text/csv", "application/x-npy", "application/x-npz"])
def test_empty_body_is_400(ctype: str) -> None:
    with pytest.raises(BadRequestError) as info:
        codecs.decode(b"", ctype)
    assert info.value.status == 400


# ---- JSON -------------------------------------------------------------------------------------------


def test_json_round_trip_with_numpy_values() -> None:
    assert codecs.decode(b'{"instances": [[1, 2]]}', "application/json; charset=utf-8") == {"instances": [[1, 2]]}
    body, ctype = codecs.encode({"p": np.array([0.5, 1.5]), "n": np.int64(3)}, "application/json", "text/csv")
    assert ctype == "application/json"
    assert json.loads(body) == {"p": [0.5, 1.5], "n": 3}


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2", b"\xff\xfe"])
def test_bad_json_is_400(body: bytes) -> None:
    with pytest.raises(BadRequestError) as info:
        codecs.decode(body, "application/json")
    assert info.value.status == 400
    assert "Traceback" not in info.value.message


def test_json_with_other_charset() -> None:
    assert codecs.decode('["é"]'.encode("latin-1"), "application/json; charset=latin-1") == ["é"]
    with pytest.raises(UnsupportedContentTypeError, match="charset 'no-such-charset' is not supported"):
        codecs.decode(b"[1]", "application/json; charset=no-such-charset")


# ---- CSV --------------------------------------------------------------------------------------------


def test_numeric_csv_is_float_2d_array_with_params() -> None:
    arr = codecs.decode(b"1,2,3\n4,5,6\n", "text/csv; charset=utf-8")
    assert arr.dtype == np.float64 and arr.shape == (2, 3)
    np.testing.assert_array_equal(arr, [[1, 2, 3], [4, 5, 6]])
    one = codecs.decode(b"7", "text/csv")
    assert one.shape == (1, 1)


def test_csv_empty_numeric_field_is_nan() -> None:
    arr = codecs.decode(b"1,,3\n", "text/csv")
    assert np.isnan(arr[0, 1]) and arr[0, 2] == 3


def test_csv_with_strings_is_object_array_typed_per_column() -> None:
    arr = codecs.decode(b'1.5,red,"a, quoted"\n2,blue,b\n', "text/csv")
    assert arr.dtype == object and arr.shape == (2, 3)
    assert arr[0, 0] == 1.5 and isinstance(arr[1, 0], float)
    assert list(arr[:, 1]) == ["red", "blue"]
    assert arr[0, 2] == "a, quoted"


def test_csv_header_present_is_skipped_or_dataframe() -> None:
    data = codecs.decode(b"x,y\n1,2\n3,4\n", "text/csv; header=present")
    try:
        import pandas  # noqa: F401
    except ImportError:
        np.testing.assert_array_equal(data, [[1, 2], [3, 4]])
    else:
        assert list(data.columns) == ["x", "y"]


def test_csv_without_header_parameter_treats_first_row_as_data() -> None:
    data = codecs.decode(b"x,y\n1,2\n", "text/csv")
    assert data.shape == (2, 2) and data[0, 0] == "x"


@pytest.mark.parametrize(
    ("body", "ctype", "match"),
    [
        (b"1,2\n3\n", "text/csv", "row 2 has 1 fields"),
        (b"x,y\n", "text/csv; header=present", "no data rows"),
        (b"\xff\xfe,1", "text/csv", "not valid utf-8"),
        (b'"unterminated\n1', "text/csv", None),
    ],
)
def test_bad_csv_is_400(body: bytes, ctype: str, match: str | None) -> None:
    try:
        result = codecs.decode(body, ctype)
    except BadRequestError as exc:
        assert exc.status == 400
        if match:
            assert match in exc.message
        return
    # The csv module reads an unterminated quote to the end of input; that must still be a table.
    assert match is None and result.shape[0] >= 1


def test_csv_encode_shapes() -> None:
    assert codecs.encode(3.5, "text/csv", "application/json")[0] == b"3.5\n"
    assert codecs.encode(np.array([1, 2]), "text/csv", "application/json")[0] == b"1\n2\n"
    assert codecs.encode([[1, 2], [3, 4]], "text/csv", "application/json")[0] == b"1,2\n3,4\n"
    assert codecs.encode(np.array(["a,b", "c"]), "text/csv", "application/json")[0] == b'"a,b"\nc\n'
    # float32 values keep their short form.
    assert codecs.encode(np.array([0.1], dtype=np.float32), "text/csv", "application/json")[0] == b"0.1\n"


# ---- NPY / NPZ --------------------------------------------------------------------------------------


def test_npy_round_trip() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    decoded = codecs.decode(npy(arr), "application/x-npy")
    np.testing.assert_array_equal(decoded, arr)
    assert decoded.dtype == np.float32
    body, ctype = codecs.encode(arr, "application/x-npy", "application/json")
    assert ctype == "application/x-npy"
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), arr)


def test_npy_refuses_pickled_object_arrays() -> None:
    body = npy(np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BadRequestError, match="pickle") as info:
        codecs.decode(body, "application/x-npy")
    assert info.value.status == 400


@pytest.mark.parametrize("body", [b"not an npy file", b"\x93NUMPY\x01\x00garbage"])
def test_bad_npy_is_400(body: bytes) -> None:
    with pytest.raises(BadRequestError):
        codecs.decode(body, "application/x-npy")


def test_npz_single_many_and_sparse() -> None:
    np.testing.assert_array_equal(codecs.decode(npz(x=np.ones(3)), "application/x-npz"), np.ones(3))
    many = codecs.decode(npz(a=np.ones(2), b=np.zeros(2)), "application/x-npz")
    assert set(many) == {"a", "b"}
    import scipy.sparse

    matrix = scipy.sparse.random(4, 5, density=0.5, format="csr", random_state=0)
    out = io.BytesIO()
    scipy.sparse.save_npz(out, matrix)
    decoded = codecs.decode(out.getvalue(), "application/x-npz")
    assert scipy.sparse.issparse(decoded)
    np.testing.assert_array_equal(decoded.toarray(), matrix.toarray())
    body, ctype = codecs.encode(matrix, "application/x-npz", "application/json")
    np.testing.assert_array_equal(codecs.decode(body, ctype).toarray(), matrix.toarray())


def test_npz_encode_round_trip() -> None:
    arr = np.arange(4).reshape(2, 2)
    body, ctype = codecs.encode(arr, "application/x-npz", "application/json")
    np.testing.assert_array_equal(codecs.decode(body, ctype), arr)
    body, ctype = codecs.encode({"p": arr, "q": arr * 2}, "application/x-npz", "application/json")
    decoded = codecs.decode(body, ctype)
    np.testing.assert_array_equal(decoded["q"], arr * 2)


def test_npz_refuses_pickle_and_garbage_and_plain_npy() -> None:
    out = io.BytesIO()
    np.savez(out, o=np.array([object()], dtype=object))
    with pytest.raises(BadRequestError, match="pickle"):
        codecs.decode(out.getvalue(), "application/x-npz")
    with pytest.raises(BadRequestError):
        codecs.decode(b"PK\x03\x04 broken zip", "application/x-npz")
    with pytest.raises(BadRequestError, match="application/x-npy"):
        codecs.decode(npy(np.ones(2)), "application/x-npz")


# ---- JSON Lines ------------------------------------------------------------------------------------


def test_jsonlines_round_trip_and_aliases() -> None:
    assert codecs.decode(b'[1, 2]\n\n{"a": 3}\n', "application/jsonlines") == [[1, 2], {"a": 3}]
    assert codecs.decode(b"[1]\n", "application/jsonl") == [[1]]
    body, ctype = codecs.encode(np.array([[1, 2], [3, 4]]), "application/jsonlines", "application/json")
    assert (body, ctype) == (b"[1, 2]\n[3, 4]\n", "application/jsonlines")
    assert codecs.encode({"a": 1}, "application/jsonlines", "application/json")[0] == b'{"a": 1}\n'


@pytest.mark.parametrize("body", [b"[1]\n{broken\n", b"\n\n"])
def test_bad_jsonlines_is_400(body: bytes) -> None:
    with pytest.raises(BadRequestError):
        codecs.decode(body, "application/jsonlines")


# ---- registry --------------------------------------------------------------------------------------


def test_custom_codec_registry() -> None:
    class Upper(codecs.Codec):
        media_type = "text/plain"

        def decode(self, body, params):  # type: ignore[no-untyped-def]
            return body.decode().upper()

        def encode(self, prediction):  # type: ignore[no-untyped-def]
            return str(prediction).encode()

    registry = codecs.CodecRegistry([codecs.JSONCodec(), Upper()])
    assert registry.decode(b"hi", "text/plain") == "HI"
    assert registry.encode("x", "text/plain", "application/json") == (b"x", "text/plain")
    with pytest.raises(UnsupportedContentTypeError):
        registry.decode(b"1", "text/csv")
    # The default registry is untouched.
    with pytest.raises(UnsupportedContentTypeError):
        codecs.decode(b"hi", "text/plain")


# ---- a 406 offers only what can be answered ----------------------------------------------------------


def _offered(message: str) -> list[str]:
    """The types a 406 message offers ("...; ask for one of a, b")."""
    assert "ask for one of " in message, message
    return message.split("ask for one of ", 1)[1].split(", ")


def test_406_offers_only_types_that_can_carry_the_prediction() -> None:
    # A mapping of outputs: CSV and NPY cannot carry it, so they are not offered.
    with pytest.raises(UnsupportedAcceptError) as info:
        codecs.encode({"label": [0, 1], "p": [0.2, 0.8]}, "text/csv", "application/json")
    assert _offered(info.value.message) == ["application/json", "application/x-npz", "application/jsonlines"]
    # A 3-D array cannot be CSV either.
    with pytest.raises(UnsupportedAcceptError) as info:
        codecs.encode(np.zeros((2, 2, 2)), "image/png", "application/json")
    assert "text/csv" not in _offered(info.value.message)


class _RequestOnly(codecs.Codec):
    """A codec a team adds to read images: requests may use it, responses never can."""

    media_type = "image/png"
    encodes = False

    def decode(self, body, params, limits=DEFAULT_LIMITS):  # type: ignore[no-untyped-def]
        return len(body)


class _ResponseOnly(codecs.Codec):
    media_type = "text/html"
    decodes = False

    def encode(self, prediction):  # type: ignore[no-untyped-def]
        return f"<p>{prediction}</p>".encode()


def test_a_request_only_codec_is_never_offered_or_answered() -> None:
    registry = codecs.CodecRegistry([codecs.JSONCodec(), _RequestOnly()])
    assert registry.decode(b"\x89PNG", "image/png") == 4
    with pytest.raises(UnsupportedAcceptError) as info:
        registry.encode([1], "image/png", "application/json")
    assert _offered(info.value.message) == ["application/json"]
    # */* and image/* never pick it.
    assert registry.encode([1], "*/*", "application/json")[1] == "application/json"
    with pytest.raises(UnsupportedAcceptError):
        registry.encode([1], "image/*", "application/json")
    assert registry.encodable_types() == ["application/json"]


def test_a_response_only_codec_refuses_requests_and_is_not_suggested_to_senders() -> None:
    registry = codecs.CodecRegistry([codecs.JSONCodec(), _ResponseOnly()])
    assert registry.encode(3, "text/html", "application/json") == (b"<p>3</p>", "text/html")
    with pytest.raises(UnsupportedContentTypeError) as info:
        registry.decode(b"<p>", "text/html")
    assert info.value.message.endswith("send one of application/json")
    assert registry.decodable_types() == ["application/json"]


def test_a_type_whose_encoder_failed_is_not_offered_again() -> None:
    class Fails(codecs.JSONCodec):
        def encode(self, prediction):  # type: ignore[no-untyped-def]
            raise ValueError("too large")

    registry = codecs.CodecRegistry([Fails(), codecs.JSONLinesCodec()])
    with pytest.raises(UnsupportedAcceptError) as info:
        registry.encode([1], "application/json", "application/json")
    assert _offered(info.value.message) == ["application/jsonlines"]
