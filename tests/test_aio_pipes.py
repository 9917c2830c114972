"""The asyncio event loop: connect_read_pipe and connect_write_pipe."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any, List, Optional

import pytest

from _aio_support import (  # noqa: F401 - fixtures
    loop,
    loop_factory,
    loop_impl,
    run,
)


class Reader(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.data = bytearray()
        self.events: List[Any] = []
        self.done = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> None:
        self.events.append("eof")

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.events.append("lost")
        self.done.set_result(exc)


class Writer(asyncio.BaseProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.events: List[Any] = []
        self.done = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.done.set_result(exc)


def test_read_and_write_pipes(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        r, w = os.pipe()
        rf, wf = os.fdopen(r, "rb", 0), os.fdopen(w, "wb", 0)
        rt, reader = await loop.connect_read_pipe(lambda: Reader(loop), rf)
        wt, writer = await loop.connect_write_pipe(lambda: Writer(loop), wf)
        assert rt.get_extra_info("pipe") is rf
        assert isinstance(rt, asyncio.ReadTransport) and isinstance(wt, asyncio.WriteTransport)
        assert rt.is_reading()
        wt.write(b"hello ")
        wt.write(bytearray(b"pipe"))
        assert wt.can_write_eof()
        while len(reader.data) < 10:
            await asyncio.sleep(0.001)
        rt.pause_reading()
        assert not rt.is_reading()
        wt.write(b"!")
        await asyncio.sleep(0.01)
        assert bytes(reader.data) == b"hello pipe"
        rt.resume_reading()
        wt.close()
        assert await writer.done is None
        assert await reader.done is None
        assert bytes(reader.data) == b"hello pipe!"
        assert reader.events == ["made", "eof", "lost"]
        assert rf.closed and wf.closed

    run(loop, main())


def test_write_pipe_flow_control_and_broken_pipe(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        r, w = os.pipe()
        wf = os.fdopen(w, "wb", 0)
        wt, writer = await loop.connect_write_pipe(lambda: Writer(loop), wf)
        wt.set_write_buffer_limits(high=1024, low=0)
        while "pause" not in writer.events:
            wt.write(b"z" * 4096)
        assert wt.get_write_buffer_size() > 1024
        os.close(r)  # the reader goes away with data pending
        exc = await writer.done
        assert isinstance(exc, BrokenPipeError)

    run(loop, main())


def test_pipe_transports_refuse_regular_files(loop: asyncio.AbstractEventLoop,
                                               tmp_path: Any) -> None:
    async def main() -> None:
        with open(tmp_path / "f", "wb") as f:
            with pytest.raises(ValueError, match="Pipe transport is"):
                await loop.connect_write_pipe(asyncio.BaseProtocol, f)
        with open(tmp_path / "f", "rb") as f:
            with pytest.raises(ValueError, match="Pipe transport is"):
                await loop.connect_read_pipe(asyncio.Protocol, f)

    run(loop, main())


def test_read_pipe_on_a_socket(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        rt, reader = await loop.connect_read_pipe(lambda: Reader(loop), a)
        b.sendall(b"over a socket")
        b.close()
        assert await reader.done is None
        assert bytes(reader.data) == b"over a socket"

    run(loop, main())
