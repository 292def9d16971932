"""Media types and their parameters: the names servekit's codecs answer to, Content-Type and Accept
parsing, and the text charsets a body may declare. Numpy-free, so the server's front process may use it."""

from __future__ import annotations

from collections.abc import Mapping

from handlers.errors import BadRequestError, UnsupportedContentTypeError

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"
JSONLINES = "application/jsonlines"
ANY = "*/*"

#: Media types whose bodies the sagemaker-inference toolkit hands to ``input_fn`` as ``str``.
UTF8_TYPES = (JSON, CSV)


def parse_media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``'Text/CSV; charset=utf-8'`` -> ``('text/csv', {'charset': 'utf-8'})``; ``None`` -> ``('', {})``."""
    if not value:
        return "", {}
    main, *raw_params = value.split(";")
    params: dict[str, str] = {}
    for raw in raw_params:
        key, sep, val = raw.partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return main.strip().lower(), params


def parse_accept(accept: str | None) -> list[str]:
    """The media ranges of an Accept header, most preferred first (``q`` descending, then position).

    Entries with ``q=0`` are dropped (the client refuses them). An empty or missing header gives ``[]``.
    """
    if not accept:
        return []
    ranked: list[tuple[float, int, str]] = []
    for pos, item in enumerate(accept.split(",")):
        media_type, params = parse_media_type(item)
        if not media_type:
            continue
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 1.0
        if quality <= 0:
            continue
        ranked.append((-quality, pos, media_type))
    ranked.sort()
    return [media_type for _, _, media_type in ranked]


#: Text encodings a body may name in its ``charset`` parameter: IANA preferred names, lower-cased
#: (charset names are case-insensitive, RFC 2046 section 4.1.2) -> Python codec. Python's codec registry
#: also answers to binary transforms (base64_codec, zlib_codec, uu_codec), rot13, punycode, idna and
#: utf-7, some super-linear on crafted input, so no other name is ever looked up: anything else is 415.
TEXT_CHARSETS: dict[str, str] = {
    "utf-8": "utf-8",
    "utf-16": "utf-16",
    "utf-16le": "utf-16-le",
    "utf-16be": "utf-16-be",
    "utf-32": "utf-32",
    "utf-32le": "utf-32-le",
    "utf-32be": "utf-32-be",
    "us-ascii": "ascii",
    "iso-8859-1": "latin-1",
    "windows-1252": "cp1252",
}
#: Common other spellings of those charsets.
CHARSET_ALIASES: dict[str, str] = {
    "utf8": "utf-8",
    "ascii": "us-ascii",
    "latin1": "iso-8859-1",
    "latin-1": "iso-8859-1",
    "iso8859-1": "iso-8859-1",
    "cp1252": "windows-1252",
}


def text_codec(params: Mapping[str, str]) -> str:
    """The Python codec for the ``charset`` parameter (default UTF-8); 415 naming any other charset."""
    name = params.get("charset", "utf-8").strip().lower()
    codec = TEXT_CHARSETS.get(CHARSET_ALIASES.get(name, name))
    if codec is None:
        raise UnsupportedContentTypeError(
            f"charset {name[:60]!r} is not supported; use one of {', '.join(TEXT_CHARSETS)}"
        )
    return codec


def decode_text(body: bytes, params: Mapping[str, str], what: str) -> str:
    """``body`` as text in its declared charset: 415 for a charset outside ``TEXT_CHARSETS``, 400 if invalid."""
    codec = text_codec(params)
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        raise BadRequestError(
            f"the {what} body is not valid {codec} text (byte {exc.start}); "
            "send UTF-8 or name the charset in Content-Type"
        ) from exc
