"""Typed errors that carry the HTTP status a server should answer with.

Messages are written for the person who sent the request or built the artifact: they name the thing
and the fix, and never contain a traceback.
"""

from __future__ import annotations


class HandlerError(Exception):
    """Base of every error a handler raises on purpose; ``status`` is the HTTP status to answer."""

    status: int = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class BadRequestError(HandlerError):
    """The request body cannot be decoded, or the input is malformed for this model (400)."""

    status = 400


class UnsupportedContentTypeError(HandlerError):
    """No decoder for the request's Content-Type (415)."""

    status = 415


class UnsupportedAcceptError(HandlerError):
    """No encoder for any type in the request's Accept (406)."""

    status = 406


class ModelLoadError(HandlerError):
    """The artifact is missing, unreadable or of an unknown layout (the message names what was looked for)."""

    status = 500


class PredictionError(HandlerError):
    """The model failed on input that was well-formed as far as the handler could tell (500)."""

    status = 500


class PayloadTooLargeError(HandlerError):
    """Decoding the request would exceed a size bound (``HandlerOptions.max_decoded_bytes``) (413)."""

    status = 413


class StreamError(HandlerError):
    """A streamed answer failed after its first chunk was produced (docs/handlers.md, "Streaming"):
    no status can be sent any more, so the server ends the stream unfinished and logs the message."""

    status = 500
