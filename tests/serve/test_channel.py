"""The native engine's front <-> worker frames (serve/channel.py) over a real socketpair."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from serve.channel import CHUNK, FRAME_BACKLOG, FrontChannel, WorkerChannel, encode_head, take_frame


def test_a_frame_is_taken_only_once_complete() -> None:
    frame = encode_head(["text/csv", None, {"k": "v"}], 5) + b"1,2,3"
    buffer = bytearray()
    for byte in frame[:-1]:
        buffer.append(byte)
        assert take_frame(buffer) is None
    buffer += frame[-1:] + frame  # the rest of the first frame and a whole second one
    assert take_frame(buffer) == (["text/csv", None, {"k": "v"}], b"1,2,3")
    assert take_frame(buffer) == (["text/csv", None, {"k": "v"}], b"1,2,3")
    assert buffer == bytearray()


def echo(sock: socket.socket) -> None:
    """A worker that answers each frame with its own fields and body, then stops at EOF."""
    channel = WorkerChannel(sock)
    while True:
        try:
            meta, body = channel.receive()
        except EOFError:
            channel.close()
            return
        channel.send(["ok", *meta], body)


@pytest.mark.parametrize("size", [0, 100, 64 * 1024, 6 * 1024 * 1024])
def test_bodies_of_any_size_round_trip(size: int) -> None:
    async def main() -> None:
        front, worker = socket.socketpair()
        thread = threading.Thread(target=echo, args=(worker,))
        thread.start()
        channel = await FrontChannel.open(front)
        body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        for _ in range(2):
            channel.send(["application/x-npy", "ü"], body)
            assert await channel.receive(30) == (["ok", "application/x-npy", "ü"], body)
        channel.close()
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive()

    asyncio.run(main())


def test_a_silent_worker_times_out_and_a_gone_one_is_eof() -> None:
    async def main() -> None:
        front, worker = socket.socketpair()
        channel = await FrontChannel.open(front)
        channel.send(["text/csv"], b"1")
        with pytest.raises(TimeoutError):
            await channel.receive(0.05)
        worker.close()
        with pytest.raises(EOFError):
            await channel.receive(30)
        with pytest.raises(EOFError):
            channel.send(["text/csv"], b"1")

    asyncio.run(main())


def test_a_backlog_of_frames_stops_reading_the_worker_until_it_is_taken() -> None:
    """A stream's chunks the front has not passed on yet stop at FRAME_BACKLOG (the worker then
    waits); taking them resumes reading, and every frame arrives once, in order."""
    count = FRAME_BACKLOG * 3

    def produce(sock: socket.socket) -> None:
        channel = WorkerChannel(sock)
        for index in range(count):
            channel.send([CHUNK], index.to_bytes(4, "big") * 4096)
        channel.close()

    async def main() -> None:
        front, worker = socket.socketpair()
        thread = threading.Thread(target=produce, args=(worker,))
        thread.start()
        channel = await FrontChannel.open(front)
        first = await channel.receive(30)
        deadline = asyncio.get_running_loop().time() + 30
        while not channel._paused:  # the worker keeps writing until the front stops reading
            assert asyncio.get_running_loop().time() < deadline, "reading never stopped"
            await asyncio.sleep(0.01)
        # beyond the backlog only what the last read of the socket brought (it reads up to 256 KiB)
        assert len(channel._frames) <= FRAME_BACKLOG + 17
        frames = [first] + [await channel.receive(30) for _ in range(count - 1)]
        assert frames == [([CHUNK], index.to_bytes(4, "big") * 4096) for index in range(count)]
        channel.close()
        await asyncio.to_thread(thread.join, 30)

    asyncio.run(main())
