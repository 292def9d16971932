"""The native engine's HTTP protocol: uvicorn's, with the request head (request line and headers)
bounded to ``MAX_HEADER_BYTES``.

uvicorn bounds the head only for its h11 protocol (``h11_max_incomplete_event_size``); its httptools
protocol, the one it picks when httptools is installed, buffers any amount. ``BoundedHttpToolsProtocol``
counts the bytes that arrive before the head is complete and answers 431 (and closes the connection)
beyond the bound, so a client's headers cost at most the bound plus one socket read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from serve.shared import error_json

#: Largest request head (request line plus headers) in bytes; beyond it 431. SageMaker's own headers
#: are small (X-Amzn-SageMaker-Custom-Attributes is at most 1024 characters).
MAX_HEADER_BYTES = 64 * 1024

_TOO_LARGE = f"the request line and headers exceed {MAX_HEADER_BYTES // 1024} KiB"


def header_too_large_response() -> bytes:
    """The complete HTTP/1.1 431 answer, in the error shape of every route."""
    body = error_json(431, _TOO_LARGE)
    head = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\nconnection: close\r\n\r\n")
    return head + body


def protocol_options() -> dict[str, Any]:
    """uvicorn.Config keyword arguments that bound the request head with whichever protocol is used."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn's h11 protocol, which has its own bound
        return {"http": "h11", "h11_max_incomplete_event_size": MAX_HEADER_BYTES}

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, answering 431 once the head exceeds ``MAX_HEADER_BYTES``."""

        in_head = False
        head_bytes = 0

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.in_head, self.head_bytes = True, 0

        def on_headers_complete(self) -> None:
            self.in_head = False
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            transport: asyncio.Transport = self.transport
            if not self.in_head or transport.is_closing():
                return
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEADER_BYTES:
                self.logger.warning("refused a request whose head exceeds %d bytes (431)", MAX_HEADER_BYTES)
                transport.write(header_too_large_response())
                transport.close()

    return {"http": BoundedHttpToolsProtocol}
