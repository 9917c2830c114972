"""The asyncio event loop: connect_read_pipe / connect_write_pipe over pipes, FIFOs, socket
pairs and ptys, on qloop's two implementations and asyncio's loop (the reference)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import warnings
from typing import Any

import pytest

from _aio_support import (
    Recorder,
    RecordingProtocol,
    collect,
    run,
)


class ReadProto(RecordingProtocol, asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.data = bytearray()
        self.got = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        assert type(data) is bytes
        self.data += data
        self.got.set()

    def eof_received(self) -> None:
        self.events.append("eof")


WriteProto = RecordingProtocol


async def read_until(proto: ReadProto, n: int) -> bytes:
    while len(proto.data) < n:
        proto.got.clear()
        await proto.got.wait()
    return bytes(proto.data)


def fdopen(fd: int, mode: str) -> Any:
    """An unbuffered file object on ``fd`` (the transport takes it over and closes it)."""
    return open(fd, mode, buffering=0)


def read_all(fd: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def test_read_pipe(loop: asyncio.AbstractEventLoop) -> None:
    r, w = os.pipe()
    pipe = fdopen(r, "rb")

    async def main() -> tuple[Any, ReadProto]:
        t, p = await loop.connect_read_pipe(lambda: ReadProto(loop), pipe)
        assert p.events == ["made"] and p.transport is t
        assert isinstance(t, asyncio.ReadTransport)
        assert t.get_extra_info("pipe") is pipe
        assert t.get_extra_info("nothing", 5) == 5
        assert t.is_reading() and not t.is_closing()
        assert f"fd={r}" in repr(t) and "polling" in repr(t)
        os.write(w, b"hello")
        assert await read_until(p, 5) == b"hello"
        os.write(w, b" world")
        assert await read_until(p, 11) == b"hello world"
        os.close(w)
        assert await p.done is None
        return t, p

    t, p = run(loop, main())
    assert p.events == ["made", "eof", ("lost", None)]
    assert t.is_closing() and pipe.closed
    assert "closed" in repr(t)


def test_read_and_write_pipes_together(loop: asyncio.AbstractEventLoop) -> None:
    # both ends of one pipe on the loop: what the write transport sends, the read transport
    # gets; closing the writer is the reader's EOF; both file objects end closed
    async def main() -> tuple[Any, Any, ReadProto]:
        r, w = os.pipe()
        rf, wf = fdopen(r, "rb"), fdopen(w, "wb")
        rt, reader = await loop.connect_read_pipe(lambda: ReadProto(loop), rf)
        wt, writer = await loop.connect_write_pipe(lambda: WriteProto(loop), wf)
        wt.write(b"hello ")
        wt.write(bytearray(b"pipe"))
        assert await read_until(reader, 10) == b"hello pipe"
        rt.pause_reading()
        wt.write(b"!")
        for _ in range(5):
            await asyncio.sleep(0)
        assert bytes(reader.data) == b"hello pipe"  # paused: not delivered yet
        rt.resume_reading()
        assert await read_until(reader, 11) == b"hello pipe!"
        wt.close()
        assert await writer.done is None
        assert await reader.done is None
        return rf, wf, reader

    rf, wf, reader = run(loop, main())
    assert reader.events == ["made", "eof", ("lost", None)]
    assert rf.closed and wf.closed


def test_read_pipe_on_a_socket(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> ReadProto:
        a, b = socket.socketpair()
        _, reader = await loop.connect_read_pipe(lambda: ReadProto(loop), a)
        b.sendall(b"over a socket")
        b.close()
        assert await reader.done is None
        return reader

    assert bytes(run(loop, main()).data) == b"over a socket"


def test_read_pipe_pause_and_resume(loop: asyncio.AbstractEventLoop) -> None:
    r, w = os.pipe()

    async def main() -> None:
        t, p = await loop.connect_read_pipe(lambda: ReadProto(loop), fdopen(r, "rb"))
        t.pause_reading()
        assert not t.is_reading() and "idle" in repr(t)
        t.pause_reading()  # idempotent
        os.write(w, b"abc")
        for _ in range(5):
            await asyncio.sleep(0)
        assert p.data == b""  # nothing while paused
        t.resume_reading()
        assert t.is_reading()
        assert await read_until(p, 3) == b"abc"
        t.close()
        assert not t.is_reading()
        t.resume_reading()  # no effect once closing
        assert await p.done is None
        assert p.events == ["made", ("lost", None)]

    try:
        run(loop, main())
    finally:
        os.close(w)


def test_write_pipe_buffering_and_flow_control(loop: asyncio.AbstractEventLoop) -> None:
    r, w = os.pipe()
    payload = os.urandom(1 << 20)  # far more than the pipe holds

    async def main() -> WriteProto:
        t, p = await loop.connect_write_pipe(lambda: WriteProto(loop), fdopen(w, "wb"))
        assert isinstance(t, asyncio.WriteTransport) and t.can_write_eof()
        t.set_write_buffer_limits(high=1024)
        assert t.get_write_buffer_limits() == (256, 1024)
        t.write(payload)
        assert t.get_write_buffer_size() > 0
        assert p.events == ["made", "pause"]
        received = await loop.run_in_executor(None, read_all, r, len(payload))
        assert received == payload
        await asyncio.sleep(0)
        while t.get_write_buffer_size():
            await asyncio.sleep(0.001)
        assert p.events[-1] == "resume"
        t.write(bytearray(b"xy"))
        t.write(memoryview(b"z"))
        t.writelines([b"1", b"2"])
        assert os.read(r, 100) == b"xyz12"
        if not isinstance(loop, asyncio.BaseEventLoop):  # asyncio's only asserts
            with pytest.raises(TypeError, match="bytes-like"):
                t.write("text")  # type: ignore[arg-type]
        t.write_eof()
        assert t.is_closing()
        assert await p.done is None
        assert os.read(r, 10) == b""  # the pipe is closed
        return p

    try:
        p = run(loop, main())
    finally:
        os.close(r)
    assert p.events == ["made", "pause", "resume", ("lost", None)]


def test_write_pipe_close_flushes_and_abort_drops(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        r, w = os.pipe()
        t, p = await loop.connect_write_pipe(lambda: WriteProto(loop), fdopen(w, "wb"))
        t.write(b"x" * 200_000)
        size = t.get_write_buffer_size()
        assert size > 0
        t.close()  # flushes first
        t.write(b"dropped")  # after close: ignored
        received = await loop.run_in_executor(None, read_all, r, 200_000)
        assert len(received) == 200_000
        assert await p.done is None
        os.close(r)

        r, w = os.pipe()
        t, p = await loop.connect_write_pipe(lambda: WriteProto(loop), fdopen(w, "wb"))
        t.write(b"x" * 200_000)
        t.abort()
        assert t.get_write_buffer_size() == 0
        assert await p.done is None
        assert len(read_all(r, 1 << 20)) < 200_000
        os.close(r)

    run(loop, main())


@pytest.mark.parametrize("pending", [False, True])
def test_write_pipe_reader_goes_away(loop: asyncio.AbstractEventLoop, pending: bool) -> None:
    async def main() -> Any:
        r, w = os.pipe()
        t, p = await loop.connect_write_pipe(lambda: WriteProto(loop), fdopen(w, "wb"))
        if pending:
            t.write(b"x" * 200_000)  # stays partly buffered: nobody reads
            assert t.get_write_buffer_size()
        os.close(r)
        return await p.done

    exc = run(loop, main())
    if pending:
        assert isinstance(exc, BrokenPipeError)
    else:
        assert exc is None


def test_write_to_a_socketpair_peer_that_closes(loop: asyncio.AbstractEventLoop) -> None:
    a, b = socket.socketpair()

    async def main() -> Any:
        t, p = await loop.connect_write_pipe(lambda: WriteProto(loop),
                                             fdopen(a.detach(), "wb"))
        t.write(b"ping")
        assert b.recv(10) == b"ping"
        b.close()
        return await p.done

    assert run(loop, main()) is None


def test_writes_after_the_peer_went_away(loop: asyncio.AbstractEventLoop,
                                         caplog: Any) -> None:
    async def main() -> None:
        r, w = os.pipe()
        t, p = await loop.connect_write_pipe(lambda: WriteProto(loop), fdopen(w, "wb"))
        os.close(r)
        t.write(b"boom")  # EPIPE: the transport closes with it
        exc = await p.done
        assert isinstance(exc, BrokenPipeError)
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(8):
                t.write(b"more")  # ignored, logged after a few
        assert any("pipe closed by peer" in rec.getMessage() for rec in caplog.records)

    run(loop, main())


def test_fifo(loop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    path = str(tmp_path / "fifo")
    os.mkfifo(path)

    async def main() -> bytes:
        rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        _, rp = await loop.connect_read_pipe(lambda: ReadProto(loop), fdopen(rfd, "rb"))
        wt, wp = await loop.connect_write_pipe(lambda: WriteProto(loop), fdopen(wfd, "wb"))
        wt.write(b"through the fifo")
        data = await read_until(rp, 16)
        wt.close()
        await wp.done
        await rp.done  # EOF once the writer is gone
        return data

    assert run(loop, main()) == b"through the fifo"


def test_pty(loop: asyncio.AbstractEventLoop) -> None:
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)

    async def main() -> tuple[bytes, bytes]:
        rt, rp = await loop.connect_read_pipe(lambda: ReadProto(loop), fdopen(master, "rb"))
        wt, wp = await loop.connect_write_pipe(lambda: WriteProto(loop),
                                               fdopen(os.dup(master), "wb"))
        wt.write(b"to the slave")
        got = await loop.run_in_executor(None, read_all, slave, 12)
        os.write(slave, b"from the slave")
        data = await read_until(rp, 14)
        wt.close()
        await wp.done
        rt.close()
        await rp.done
        return got, data

    try:
        assert run(loop, main()) == (b"to the slave", b"from the slave")
    finally:
        os.close(slave)


def test_rejected_files(loop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    path = tmp_path / "regular"
    path.write_bytes(b"data")

    async def main(rf: Any, wf: Any) -> None:
        with pytest.raises(ValueError, match="Pipe transport is for pipes/sockets only"):
            await loop.connect_read_pipe(lambda: ReadProto(loop), rf)
        with pytest.raises(ValueError, match="only for pipes, sockets and character"):
            await loop.connect_write_pipe(lambda: WriteProto(loop), wf)

    with open(path, "rb") as rf, open(tmp_path / "other", "wb") as wf:
        run(loop, main(rf, wf))


def test_data_received_error_is_reported(loop: asyncio.AbstractEventLoop) -> None:
    # as in asyncio: the exception handler hears of it and the transport goes on reading
    rec = Recorder()
    loop.set_exception_handler(rec)
    r, w = os.pipe()

    class Failing(ReadProto):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if data == b"bad":
                raise ZeroDivisionError("in data_received")

    async def main() -> None:
        t, p = await loop.connect_read_pipe(lambda: Failing(loop), fdopen(r, "rb"))
        os.write(w, b"bad")
        await read_until(p, 3)
        await asyncio.sleep(0)
        os.write(w, b"good")
        assert await read_until(p, 7) == b"badgood"
        assert not t.is_closing()
        t.close()
        await p.done

    try:
        run(loop, main())
    finally:
        os.close(w)
    assert len(rec.contexts) == 1
    assert isinstance(rec.contexts[0]["exception"], ZeroDivisionError)


def test_unclosed_pipe_transports_warn(loop_factory: Any) -> None:
    loop = loop_factory()
    r, w = os.pipe()

    async def main() -> Any:
        rt, _ = await loop.connect_read_pipe(lambda: ReadProto(loop), fdopen(r, "rb"))
        wt, _ = await loop.connect_write_pipe(lambda: WriteProto(loop), fdopen(w, "wb"))
        return rt, wt

    rt, wt = run(loop, main())
    loop.close()
    assert "open" in repr(rt) and "open" in repr(wt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del rt, wt
        collect()
    assert sum("unclosed transport" in str(c.message) for c in caught) == 2, \
        [str(c.message) for c in caught]
    for fd in (r, w):
        with pytest.raises(OSError):
            os.fstat(fd)  # closed by the collected transports


def test_add_reader_on_a_pipe_transport_fd_is_refused(qloop_loop: Any) -> None:
    # asyncio's loop would silently take the fd away from its pipe transport
    loop = qloop_loop
    r, w = os.pipe()

    async def main() -> None:
        t, p = await loop.connect_read_pipe(lambda: ReadProto(loop), fdopen(r, "rb"))
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(r, lambda: None)
        t.close()
        await p.done

    try:
        run(loop, main())
    finally:
        os.close(w)


def test_transports_are_not_constructible(qloop_loop: Any) -> None:
    r, w = os.pipe()
    try:
        async def main() -> None:
            t, p = await qloop_loop.connect_read_pipe(lambda: ReadProto(qloop_loop),
                                                      fdopen(r, "rb"))
            with pytest.raises(TypeError, match="created by the event loop"):
                type(t)()
            t.close()
            await p.done

        run(qloop_loop, main())
    finally:
        os.close(w)
