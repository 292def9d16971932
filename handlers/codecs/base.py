"""``Codec``: the base class of one payload format (what a team subclasses to add a media type)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from handlers.limits import DEFAULT_LIMITS, DecodeLimits


class Codec(ABC):
    """One payload format. Subclasses set ``media_type`` (the canonical name, used in responses)."""

    media_type: ClassVar[str]
    #: Other names clients use for the same format; they decode and encode the same way.
    aliases: ClassVar[tuple[str, ...]] = ()

    def media_types(self) -> tuple[str, ...]:
        """Every media type this codec answers to, canonical first."""
        return (self.media_type, *self.aliases)

    @abstractmethod
    def decode(self, body: bytes, params: Mapping[str, str], limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
        """Bytes -> value; raise ``BadRequestError`` naming what is wrong with the body, and
        ``PayloadTooLargeError`` before allocating more than ``limits.max_bytes``.

        A codec written before ``limits`` existed may define ``decode(body, params)``; the registry then
        calls it that way (unbounded: only the request-size limit applies to it).
        """

    def can_encode(self, prediction: Any) -> bool:
        """Cheap check whether ``encode`` can represent ``prediction`` (picks among acceptable types)."""
        return True

    @abstractmethod
    def encode(self, prediction: Any) -> bytes:
        """Value -> bytes; raise TypeError/ValueError when it cannot (the next acceptable type is tried)."""
