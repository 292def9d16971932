"""``Codec``: the base class of one payload format (what a team subclasses to add a media type)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from handlers.errors import UnsupportedContentTypeError
from handlers.limits import DEFAULT_LIMITS, DecodeLimits


class Codec:
    """One payload format. Subclasses set ``media_type`` (the canonical name, used in responses) and
    implement ``decode`` and ``encode``; a codec for one direction only sets ``encodes`` or ``decodes``
    to False instead of implementing the other (the registry then never offers it for that direction)."""

    media_type: ClassVar[str]
    #: Other names clients use for the same format; they decode and encode the same way.
    aliases: ClassVar[tuple[str, ...]] = ()
    #: Whether requests may be sent in this type (False: a Content-Type naming it is 415).
    decodes: ClassVar[bool] = True
    #: Whether responses may be answered in this type (False: never chosen, never offered by a 406).
    encodes: ClassVar[bool] = True

    def media_types(self) -> tuple[str, ...]:
        """Every media type this codec answers to, canonical first."""
        return (self.media_type, *self.aliases)

    def decode(self, body: bytes, params: Mapping[str, str], limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        """Bytes -> value; raise ``BadRequestError`` naming what is wrong with the body, and
        ``PayloadTooLargeError`` before allocating more than ``limits.max_bytes``.

        A codec written before ``limits`` existed may define ``decode(body, params)``; the registry then
        calls it that way (unbounded: only the request-size limit applies to it).
        """
        raise UnsupportedContentTypeError(f"{self.media_type} is a response type only; requests cannot use it")

    def can_encode(self, prediction: Any) -> bool:
        """Cheap check whether ``encode`` can represent ``prediction`` (picks among acceptable types)."""
        return self.encodes

    def encode(self, prediction: Any) -> bytes:
        """Value -> bytes; raise TypeError/ValueError when it cannot (the next acceptable type is tried)."""
        raise TypeError(f"{self.media_type} is a request type only; responses cannot use it")
