"""A streamed answer as the routes see it, whichever process produces its chunks.

A user script or handler that answers with an iterator (docs/handlers.md, "Streaming") gives the
routes a ``Streamed``: the answer's head and first chunk, already produced, and the rest as an
``AnswerStream``. The native engine's front reads the rest from the worker's socket
(``serve.engine``); a prefork worker pulls it from the model in its own process (``serve.prefork``).
The routes write each chunk as it comes and end the HTTP answer as docs/sagemaker-contract.md §10 says.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from handlers.base import Response


class StreamFailed(Exception):
    """The stream cannot go on; ``reason`` (one line) names why, for the container log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AnswerStream(ABC):
    """The chunks of a streamed answer after its first. Whoever holds one ends it: reads it to its
    end, or calls ``cancel``; either frees what produced it (the worker, the user's generator)."""

    @abstractmethod
    async def next_chunk(self) -> bytes | None:
        """The next chunk (non-empty), None at the end; ``StreamFailed`` when the stream broke. Waits
        at most SAGEMAKER_MODEL_SERVER_TIMEOUT for it."""

    @abstractmethod
    async def cancel(self) -> None:
        """Stop the stream before its end (the client went away); nothing once it has ended."""


@dataclass(frozen=True)
class Streamed:
    """A streamed answer: ``head`` has the content type, custom attributes, headers and, as its body,
    the first chunk (b"" for a stream with no chunk); ``rest`` the chunks after it."""

    head: Response
    rest: AnswerStream
