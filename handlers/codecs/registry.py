"""``CodecRegistry``: media type -> codec, and content negotiation (which codec decodes a request, which
acceptable type answers a prediction)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from handlers.codecs.arrays import to_ndarray
from handlers.codecs.base import Codec
from handlers.codecs.media_types import ANY, parse_accept, parse_media_type
from handlers.errors import BadRequestError, UnsupportedAcceptError, UnsupportedContentTypeError
from handlers.limits import DEFAULT_LIMITS, DecodeLimits


class CodecRegistry:
    """Media type -> codec. One default registry (``REGISTRY``) serves the module-level functions."""

    def __init__(self, codecs: list[Codec] | None = None) -> None:
        self._codecs: list[Codec] = []
        self._by_type: dict[str, Codec] = {}
        self._bounded: dict[int, bool] = {}
        for codec in codecs or []:
            self.register(codec)

    def register(self, codec: Codec) -> None:
        """Add ``codec`` (a later codec for the same media type replaces the earlier one)."""
        self._codecs = [c for c in self._codecs if not set(c.media_types()) & set(codec.media_types())]
        self._codecs.append(codec)
        self._by_type = {mt: c for c in self._codecs for mt in c.media_types()}
        self._bounded = {id(c): _takes_limits(c) for c in self._codecs}

    def get(self, media_type: str) -> Codec | None:
        """The codec for a bare media type (no parameters), or None."""
        return self._by_type.get(media_type)

    def media_types(self) -> list[str]:
        """Canonical media types, in registration order."""
        return [c.media_type for c in self._codecs]

    def decodable_types(self) -> list[str]:
        """Canonical media types a request may be sent in, in registration order."""
        return [c.media_type for c in self._codecs if c.decodes]

    def encodable_types(self) -> list[str]:
        """Canonical media types a response may be answered in, in registration order."""
        return [c.media_type for c in self._codecs if c.encodes]

    def answerable_types(self, prediction: Any) -> list[str]:
        """Canonical media types whose codec can carry ``prediction`` (what a 406 offers)."""
        return [c.media_type for c in self._codecs if c.encodes and c.can_encode(prediction)]

    def decode(self, body: bytes, content_type: str | None, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        """Decode ``body`` by its Content-Type (415 if none fits, 400 if the body is malformed, 413 if
        decoding it would exceed ``limits``)."""
        media_type, params = parse_media_type(content_type)
        if not media_type:
            raise UnsupportedContentTypeError(
                f"the request has no Content-Type; send one of {', '.join(self.decodable_types())}"
            )
        codec = self._by_type.get(media_type)
        if codec is None or not codec.decodes:
            raise UnsupportedContentTypeError(
                f"Content-Type {media_type!r} is not supported; send one of {', '.join(self.decodable_types())}"
            )
        if not body:
            raise BadRequestError(f"the request body is empty (Content-Type {media_type})")
        if self._bounded[id(codec)]:
            return codec.decode(body, params, limits)
        return codec.decode(body, params)  # a custom codec written before limits existed

    def candidates(self, accept: str | None, default_accept: str) -> list[str]:
        """Concrete media types to try for ``accept``, best first (ranges and ``*/*`` expanded)."""
        ranges = parse_accept(accept) or [ANY]
        default_type, _ = parse_media_type(default_accept)
        out: list[str] = []
        for media_range in ranges:
            if media_range == ANY:
                options = [default_type, *self.encodable_types()]
            elif media_range.endswith("/*"):
                prefix = media_range[:-1]
                options = [default_type] if default_type.startswith(prefix) else []
                options += [mt for mt in self.encodable_types() if mt.startswith(prefix)]
            else:
                options = [media_range]
            out.extend(mt for mt in options if mt not in out)
        return out

    def encode(self, prediction: Any, accept: str | None, default_accept: str) -> tuple[bytes, str]:
        """Encode ``prediction`` for ``accept`` -> ``(body, content_type)``; 406 if no acceptable type fits.

        The response Content-Type is the codec's canonical media type. The 406 offers only the types
        that can carry this prediction (``answerable_types``), never one that would fail again.
        """
        known = [mt for mt in self.candidates(accept, default_accept) if mt in self._by_type]
        failed: set[str] = set()
        for media_type in known:
            codec = self._by_type[media_type]
            if not (codec.encodes and codec.can_encode(prediction)):
                continue
            try:
                return codec.encode(prediction), codec.media_type
            except (TypeError, ValueError):
                failed.add(codec.media_type)
        offer = [mt for mt in self.answerable_types(prediction) if mt not in failed]
        asked = f"cannot be encoded as {', '.join(known)}" if known else f"Accept {accept!r} names no supported type"
        advice = f"ask for one of {', '.join(offer)}" if offer else "no response type can carry it"
        raise UnsupportedAcceptError(f"the prediction ({_describe(prediction)}) {asked}; {advice}")


def _takes_limits(codec: Codec) -> bool:
    """Whether ``codec.decode`` accepts the ``limits`` argument (codecs written before it did not)."""
    try:
        params = inspect.signature(codec.decode).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional for p in params) >= 3 or any(
        p.kind is inspect.Parameter.VAR_POSITIONAL for p in params
    )


def _describe(prediction: Any) -> str:
    if isinstance(prediction, Mapping):
        return "a mapping"
    try:
        arr = to_ndarray(prediction)
    except (TypeError, ValueError):
        return type(prediction).__name__
    return f"{arr.ndim}-D {arr.dtype} array" if arr.ndim else f"{type(prediction).__name__}"
