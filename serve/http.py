"""The native engine's HTTP protocol: uvicorn's, with the request head (request line and headers)
bounded to ``MAX_HEADER_BYTES`` and each response written to the socket once.

uvicorn bounds the head only for its h11 protocol (``h11_max_incomplete_event_size``); its httptools
protocol, the one it picks when httptools is installed, buffers any amount. ``BoundedHttpToolsProtocol``
counts the bytes that arrive before the head is complete and answers 431 (and closes the connection)
beyond the bound, so a client's headers cost at most the bound plus one socket read.

uvicorn writes a response's head and its body with two ``transport.write`` calls; uvloop sends each
at once, so every response cost two ``send`` system calls and two loopback segments, waking the
client twice. ``CoalescingTransport`` joins what one event-loop step writes into one ``send``
(docs/engines.md, "Where a request's time goes").
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from serve.shared import error_json

if TYPE_CHECKING:
    import uvicorn

    from serve.settings import Settings

#: Largest request head (request line plus headers) in bytes; beyond it 431. SageMaker's own headers
#: are small (X-Amzn-SageMaker-Custom-Attributes is at most 1024 characters).
MAX_HEADER_BYTES = 64 * 1024

_TOO_LARGE = f"the request line and headers exceed {MAX_HEADER_BYTES // 1024} KiB"

#: The ASGI scope extension (``scope["extensions"]``) whose "close" closes the connection in the middle
#: of a chunked answer, without the terminating chunk: how a streamed answer that broke ends
#: (docs/sagemaker-contract.md §10). ASGI itself has no message for it.
CLOSE_CONNECTION = "servekit.close_connection"


def header_too_large_response() -> bytes:
    """The complete HTTP/1.1 431 answer, in the error shape of every route."""
    body = error_json(431, _TOO_LARGE)
    head = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\nconnection: close\r\n\r\n")
    return head + body


class CoalescingTransport:
    """A transport that joins the writes of one event-loop step into one write of the real one.

    Everything but ``write`` and ``close`` goes to the wrapped transport unchanged; ``close`` first
    writes what is pending, so nothing written before it is lost."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def uvicorn_config(app: Any, settings: Settings, **extra: Any) -> uvicorn.Config:
    """uvicorn's configuration for the front and for prefork workers alike; ``extra`` adds the rest."""
    import uvicorn

    return uvicorn.Config(
        app, log_config=None, access_log=False, log_level=settings.log_level,
        # No proxy sits in front of the container and no route reads the client's address: skip
        # uvicorn's X-Forwarded-For middleware on every request.
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.drain_s),
        **protocol_options(),  # bounds the request line and headers (431 beyond)
        **extra,
    )


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

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CoalescingTransport(transport))  # type: ignore[arg-type]

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.in_head, self.head_bytes = True, 0
            self.scope["extensions"] = {CLOSE_CONNECTION: {"close": self.transport.close}}

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
