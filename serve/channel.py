"""The native engine's front <-> worker messages: one socketpair per worker, compact frames.

A frame is a fixed header (the lengths of the two parts), a JSON array of header fields and the raw
body bytes, so a request or response costs one JSON array and no pickling of dataclasses; the body
is never copied into an encoding. Messages (``meta`` is the JSON array):

    front -> worker:  ["load", artifact_directory, model_name] (once, to a spare worker)
                      | [content_type, accept, custom_attributes, target_model, model_name] + request body
    worker -> front:  ["ready", pid, uss_bytes, pss_bytes, load_seconds] | ["respawn", reason]
                      | ["ok", content_type, custom_attributes, headers] + response body
                      | ["error", status, message]

A streamed answer (docs/handlers.md, "Streaming") is several frames, the first in place of "ok":

    worker -> front:  ["stream", content_type, custom_attributes, headers] + first chunk,
                      then ["chunk"] + chunk ..., then ["end"] | ["broken", message]
    front -> worker:  ["cancel"] (the client went away: the worker closes the stream, then "end")

A "cancel" may cross the stream's last frame; the worker ignores one that arrives between requests.

A batch (docs/engines.md, "Batching") is one frame each way, its bodies joined and their sizes listed:

    front -> worker:  ["batch", [request fields, ...], [body size, ...]] + the bodies
    worker -> front:  ["answers", [answer, ...], [body size, ...]] + the bodies, in the requests' order,
                      each answer an "ok" or "error" frame's fields

The front reads each worker's socket with one persistent asyncio protocol (``FrontChannel``), which
is registered once per worker rather than once per request; a worker reads and writes its end
blocking (``WorkerChannel``). Closing the socket is the stop signal both ways.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections import deque
from typing import Any, cast

#: Frame header: the lengths of the JSON header fields and of the body, network byte order.
HEAD = struct.Struct("!II")
#: Bodies at least this large are written apart from the header rather than joined to it (a copy).
JOIN_LIMIT = 64 * 1024
#: How much a worker asks the kernel for at a time while a frame is incomplete (below glibc's mmap
#: threshold, so the buffer of each ``recv`` comes from the heap, not a fresh mapping).
READ_SIZE = 64 * 1024

Frame = tuple[list[Any], bytes]

#: The kinds of a streamed answer's frames (the first field of each), see the module docstring.
STREAM, CHUNK, END, BROKEN, CANCEL = "stream", "chunk", "end", "broken", "cancel"
#: The kinds of a batch's two frames, see the module docstring.
BATCH, ANSWERS = "batch", "answers"
#: Frames the front holds before it stops reading a worker's socket (a stream's chunks while the
#: client reads slower than the model produces); the worker then blocks until the client catches up.
FRAME_BACKLOG = 64

#: One encoder for every frame (``json.dumps`` with options builds a new encoder per call).
_encode_fields = json.JSONEncoder(separators=(",", ":")).encode
_decode_fields = json.JSONDecoder().decode


def encode_head(meta: list[Any], body_size: int) -> bytes:
    """The frame's header and JSON fields; the body follows it."""
    fields = _encode_fields(meta).encode("utf-8")
    return HEAD.pack(len(fields), body_size) + fields


def take_frame(buffer: bytearray) -> Frame | None:
    """The first complete frame in ``buffer``, removed from it; None while it is incomplete."""
    if len(buffer) < HEAD.size:
        return None
    meta_size, body_size = HEAD.unpack_from(buffer)
    body_start = HEAD.size + meta_size
    end = body_start + body_size
    if len(buffer) < end:
        return None
    with memoryview(buffer) as view:  # one copy of the body, not two
        meta = _decode_fields(str(view[HEAD.size:body_start], "utf-8"))
        body = bytes(view[body_start:end])
    del buffer[:end]
    return meta, body


def pack(metas: list[list[Any]], bodies: list[bytes], kind: str) -> Frame:
    """One frame of ``kind`` (BATCH or ANSWERS) carrying several messages, in order."""
    return [kind, metas, [len(body) for body in bodies]], b"".join(bodies)


def unpack(frame: Frame) -> list[Frame]:
    """The messages of a BATCH or ANSWERS frame, in order."""
    (_, metas, sizes), body = frame
    parts, start = [], 0
    with memoryview(body) as view:
        for size in sizes:
            parts.append(bytes(view[start:start + size]))
            start += size
    return list(zip(metas, parts, strict=True))


def is_batch(meta: list[Any]) -> bool:
    """Whether a request frame is a BATCH (a single request has five fields, a batch three)."""
    return len(meta) == 3 and meta[0] == BATCH


class FrontChannel(asyncio.Protocol):
    """The front's end of one worker's socket: frames in and out, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._frames: deque[Frame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._paused = False  # reading stopped at FRAME_BACKLOG

    @classmethod
    async def open(cls, sock: socket.socket) -> FrontChannel:
        """The channel reading ``sock`` (the front's end of a worker's socketpair) from now on."""
        _, channel = await asyncio.get_running_loop().connect_accepted_socket(cls, sock)
        return channel

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (frame := take_frame(self._buffer)) is not None:
            self._frames.append(frame)
        if self._frames:
            self._wake()
        if len(self._frames) >= FRAME_BACKLOG and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def send(self, meta: list[Any], body: bytes = b"") -> None:
        """Queue one frame; the event loop writes it without blocking (large bodies included)."""
        if self.transport is None or self._closed:
            raise EOFError("the worker's socket is closed")
        head = encode_head(meta, len(body))
        if len(body) < JOIN_LIMIT:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))

    async def receive(self, timeout: float) -> Frame:
        """The next frame; TimeoutError after ``timeout`` seconds, EOFError once the worker is gone."""
        if not self._frames:
            if self._closed:
                raise EOFError("the worker closed its socket")
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self._frames:
                raise EOFError("the worker closed its socket")
        if self._paused and len(self._frames) <= FRAME_BACKLOG // 2 and not self._closed:
            self._paused = False
            cast(asyncio.Transport, self.transport).resume_reading()
        return self._frames.popleft()

    def close(self) -> None:
        """Close the socket: the worker sees EOF and exits."""
        self._closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class WorkerChannel:
    """A worker's end of its socket, blocking: one frame in, one frame out."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self.sock = sock
        self._buffer = bytearray()

    def send(self, meta: list[Any], body: bytes = b"") -> None:
        head = encode_head(meta, len(body))
        if len(body) < JOIN_LIMIT:
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            self.sock.sendall(body)

    def receive_available(self) -> list[Frame]:
        """The frames complete after one read (for a caller told the socket is readable, so it does
        not block); EOFError once the front closed the socket."""
        chunk = self.sock.recv(READ_SIZE)
        if not chunk:
            raise EOFError("the front closed the socket")
        self._buffer += chunk
        frames = []
        while (frame := take_frame(self._buffer)) is not None:
            frames.append(frame)
        return frames

    def receive(self) -> Frame:
        """The next frame; EOFError once the front closed the socket."""
        while (frame := take_frame(self._buffer)) is None:
            chunk = self.sock.recv(READ_SIZE)
            if not chunk:
                raise EOFError("the front closed the socket")
            self._buffer += chunk
        return frame

    def close(self) -> None:
        self.sock.close()
