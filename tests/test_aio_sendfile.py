"""The asyncio event loop: loop.sendfile (through a transport) and loop.sock_sendfile (to a
socket), native os.sendfile and the read-and-write fallback, on qloop's two implementations
and asyncio's loop (the reference)."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import socket
from typing import Any

import pytest

from _aio_support import run

DATA = os.urandom(3 * 1024 * 1024 + 123)


@pytest.fixture
def datafile(tmp_path: Any) -> Any:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    with open(path, "rb") as f:
        yield f


class Sink(asyncio.Protocol):
    """The receiving side: collects everything until EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.data = bytearray()
        self.done = loop.create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> None:
        pass

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.data))


class Sender(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[str] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")


async def connected(loop: asyncio.AbstractEventLoop) -> tuple[Any, Sender, Sink, Any]:
    sinks: list[Sink] = []

    def factory() -> Sink:
        sinks.append(Sink(loop))
        return sinks[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, sender = await loop.create_connection(Sender, "127.0.0.1", port)
    while not sinks:
        await asyncio.sleep(0)
    return transport, sender, sinks[0], server


def test_sendfile_through_a_transport(loop: asyncio.AbstractEventLoop, datafile: Any) -> None:
    async def main() -> tuple[int, bytes]:
        transport, _sender, sink, server = await connected(loop)
        transport.write(b"head:")
        n = await loop.sendfile(transport, datafile)
        transport.write(b":tail")
        assert datafile.tell() == len(DATA)
        assert transport.is_reading()  # reading resumed
        transport.close()
        received = await sink.done
        server.close()
        return n, received

    n, received = run(loop, main())
    assert n == len(DATA)
    assert received == b"head:" + DATA + b":tail"


def test_sendfile_offset_and_count(loop: asyncio.AbstractEventLoop, datafile: Any) -> None:
    async def main() -> tuple[int, bytes]:
        transport, _sender, sink, server = await connected(loop)
        n = await loop.sendfile(transport, datafile, 1000, 5000)
        assert datafile.tell() == 6000
        transport.close()
        received = await sink.done
        server.close()
        return n, received

    n, received = run(loop, main())
    assert n == 5000 and received == DATA[1000:6000]


def test_sendfile_fallback_for_a_non_regular_file(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> tuple[int, bytes]:
        transport, sender, sink, server = await connected(loop)
        f = io.BytesIO(DATA)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(transport, f, fallback=False)
        n = await loop.sendfile(transport, f)  # read and written through the transport
        assert f.tell() == len(DATA)
        assert transport.get_protocol() is sender  # put back
        transport.close()
        received = await sink.done
        server.close()
        return n, received

    n, received = run(loop, main())
    assert n == len(DATA) and received == DATA


def test_no_write_while_sendfile_runs(loop: asyncio.AbstractEventLoop, datafile: Any) -> None:
    async def main() -> None:
        transport, _sender, sink, server = await connected(loop)
        task = asyncio.ensure_future(loop.sendfile(transport, datafile))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="sendfile is in progress"):
            transport.write(b"x")
        assert await task == len(DATA)
        transport.close()
        assert await sink.done == DATA
        server.close()

    run(loop, main())


def test_sendfile_argument_errors(loop: asyncio.AbstractEventLoop, datafile: Any) -> None:
    async def main() -> None:
        transport, _sender, sink, server = await connected(loop)
        for args, exc, message in (((0, 0), ValueError, "count must be a positive integer"),
                                   ((0, "1"), TypeError, "count must be a positive integer"),
                                   ((-1,), ValueError, "offset must be a non-negative"),
                                   (("0",), TypeError, "offset must be a non-negative")):
            with pytest.raises(exc, match=message):
                await loop.sendfile(transport, datafile, *args)
        transport.close()
        with pytest.raises(RuntimeError, match="Transport is closing"):
            await loop.sendfile(transport, datafile)
        await sink.done
        server.close()

    run(loop, main())


def test_sendfile_unsupported_transport(loop: asyncio.AbstractEventLoop, datafile: Any) -> None:
    class Plain(asyncio.Transport):
        def is_closing(self) -> bool:
            return False

    async def main() -> None:
        with pytest.raises(RuntimeError, match="sendfile is not supported for transport"):
            await loop.sendfile(Plain(), datafile)

    run(loop, main())


def sock_pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def recv_all(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = await loop.sock_recv(sock, 1 << 20)
        if not chunk:
            break
        out += chunk
    return bytes(out)


def test_sock_sendfile(loop: asyncio.AbstractEventLoop, datafile: Any) -> None:
    a, b = sock_pair()

    async def main() -> tuple[int, bytes]:
        reader = asyncio.ensure_future(recv_all(loop, b, len(DATA) - 10))
        n = await loop.sock_sendfile(a, datafile, 10)
        assert datafile.tell() == len(DATA)
        return n, await reader

    try:
        n, received = run(loop, main())
    finally:
        a.close()
        b.close()
    assert n == len(DATA) - 10 and received == DATA[10:]


def test_sock_sendfile_over_tcp_twice(loop: asyncio.AbstractEventLoop, datafile: Any) -> None:
    # the whole file, then a slice: each call leaves the file position after what it sent
    async def main() -> None:
        lsock = socket.create_server(("127.0.0.1", 0))
        lsock.setblocking(False)
        client = socket.socket()
        client.setblocking(False)
        accept = asyncio.ensure_future(loop.sock_accept(lsock))
        await loop.sock_connect(client, lsock.getsockname())
        conn, _ = await accept
        lsock.close()
        try:
            receiver = asyncio.ensure_future(recv_all(loop, conn, len(DATA)))
            assert await loop.sock_sendfile(client, datafile) == len(DATA)
            assert await receiver == DATA
            assert datafile.tell() == len(DATA)
            receiver = asyncio.ensure_future(recv_all(loop, conn, 1000))
            assert await loop.sock_sendfile(client, datafile, 5000, 1000) == 1000
            assert await receiver == DATA[5000:6000]
            assert datafile.tell() == 6000
        finally:
            client.close()
            conn.close()

    run(loop, main())


def test_sock_sendfile_fallback(loop: asyncio.AbstractEventLoop) -> None:
    a, b = sock_pair()
    f = io.BytesIO(DATA)

    async def main() -> tuple[int, bytes]:
        with pytest.raises(asyncio.SendfileNotAvailableError, match="not a regular file"):
            await loop.sock_sendfile(a, f, fallback=False)
        reader = asyncio.ensure_future(recv_all(loop, b, 100_000))
        n = await loop.sock_sendfile(a, f, 5, 100_000)
        assert f.tell() == 100_005
        return n, await reader

    try:
        n, received = run(loop, main())
    finally:
        a.close()
        b.close()
    assert n == 100_000 and received == DATA[5:100_005]


def test_sock_sendfile_argument_errors(loop: asyncio.AbstractEventLoop, datafile: Any,
                                       tmp_path: Any) -> None:
    a, b = sock_pair()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)

    async def main(text: Any) -> None:
        with pytest.raises(ValueError, match="only SOCK_STREAM type sockets are supported"):
            await loop.sock_sendfile(udp, datafile)
        with pytest.raises(ValueError, match="file should be opened in binary mode"):
            await loop.sock_sendfile(a, text)
        with pytest.raises(ValueError, match="count must be a positive integer"):
            await loop.sock_sendfile(a, datafile, 0, -5)
        with pytest.raises(ValueError, match="count must be a positive integer"):
            await loop.sock_sendfile(a, datafile, 0, 0)
        with pytest.raises(ValueError, match="offset must be a non-negative integer"):
            await loop.sock_sendfile(a, datafile, -1)
        with pytest.raises(TypeError, match="offset must be a non-negative integer"):
            await loop.sock_sendfile(a, datafile, "0")
        assert await loop.sock_sendfile(a, io.BytesIO(b"")) == 0

    try:
        with open(tmp_path / "text.txt", "w") as text:
            run(loop, main(text))
    finally:
        for s in (a, b, udp):
            s.close()


def test_sock_sendfile_blocking_socket(qloop_loop: Any, datafile: Any) -> None:
    # qloop's sock_* methods always require non-blocking sockets (asyncio: in debug mode)
    a, b = socket.socketpair()

    async def main() -> None:
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            await qloop_loop.sock_sendfile(a, datafile)

    try:
        run(qloop_loop, main())
    finally:
        a.close()
        b.close()


def test_sock_sendfile_cancelled(loop: asyncio.AbstractEventLoop, datafile: Any) -> None:
    a, b = sock_pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    async def main() -> None:
        task = asyncio.ensure_future(loop.sock_sendfile(a, datafile))
        for _ in range(5):
            await asyncio.sleep(0)  # nobody reads: it waits for the socket
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        if not isinstance(loop, asyncio.BaseEventLoop):
            # the file position says how much went (asyncio's stays where it was)
            sent = datafile.tell()
            assert 0 < sent < len(DATA)
            received = await recv_all(loop, b, sent)
            assert received == DATA[:sent]
        # the socket is free again: nothing watches it any more
        loop.add_writer(a, lambda: None)
        assert loop.remove_writer(a)

    try:
        run(loop, main())
    finally:
        a.close()
        b.close()


def test_sendfile_not_supported_on_datagrams(loop: asyncio.AbstractEventLoop,
                                             datafile: Any) -> None:
    async def main() -> None:
        tr, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                    family=socket.AF_INET)
        try:
            with pytest.raises(RuntimeError, match="not supported"):
                await loop.sendfile(tr, datafile)
        finally:
            tr.close()
        assert datafile.tell() == 0

    run(loop, main())


# --------------------------------------------------------------------------------------------
# The offset and the file position: the data goes from ``offset`` (0 too, wherever the file is
# positioned) and the position ends at offset + the bytes sent, also when nothing was sent (an
# offset at or past the end of the file), on the native path and the fallback alike.  asyncio's
# loop does so from CPython gh-150107 on (in 3.13 and 3.14); an older one seeks only for a
# non-zero offset and after sending something: its arm is skipped.


@functools.cache
def _asyncio_has_the_offset_fix() -> bool:
    ref = asyncio.new_event_loop()
    a, b = sock_pair()
    try:
        f = io.BytesIO(b"ab")
        f.seek(2)
        return ref.run_until_complete(ref.sock_sendfile(a, f, 0)) == 2  # type: ignore[no-any-return]
    finally:
        a.close()
        b.close()
        ref.close()


def _needs_the_offset_fix(loop: asyncio.AbstractEventLoop) -> None:
    if isinstance(loop, asyncio.BaseEventLoop) and not _asyncio_has_the_offset_fix():
        pytest.skip("this Python's asyncio predates gh-150107 (offset 0 is not sought, the "
                    "position stays put when nothing is sent)")


@pytest.mark.parametrize("path", ["native", "fallback"])
@pytest.mark.parametrize("past", [0, 5], ids=["at-end", "past-end"])
def test_sock_sendfile_offset_at_or_past_the_end(loop: asyncio.AbstractEventLoop,
                                                 datafile: Any, path: str, past: int) -> None:
    _needs_the_offset_fix(loop)
    f = datafile if path == "native" else io.BytesIO(DATA)  # no fileno: the fallback
    f.seek(123)
    a, b = sock_pair()

    async def main() -> int:
        return await loop.sock_sendfile(a, f, len(DATA) + past)

    try:
        assert run(loop, main()) == 0
        assert f.tell() == len(DATA) + past
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("path", ["native", "fallback"])
def test_sock_sendfile_offset_zero_from_anywhere(loop: asyncio.AbstractEventLoop,
                                                 datafile: Any, path: str) -> None:
    _needs_the_offset_fix(loop)
    f = datafile if path == "native" else io.BytesIO(DATA)
    f.seek(0, io.SEEK_END)
    a, b = sock_pair()

    async def main() -> tuple[int, bytes]:
        reader = asyncio.ensure_future(recv_all(loop, b, len(DATA)))
        n = await loop.sock_sendfile(a, f, 0)
        return n, await reader

    try:
        n, received = run(loop, main())
    finally:
        a.close()
        b.close()
    assert n == len(DATA) and received == DATA
    assert f.tell() == len(DATA)


@pytest.mark.parametrize("path", ["native", "fallback"])
def test_sendfile_offsets_through_a_transport(loop: asyncio.AbstractEventLoop, datafile: Any,
                                              path: str) -> None:
    # CPython's test_sendfile_offset: from the end (nothing sent, the position moves there),
    # then from 0 with the file positioned at its end (everything sent)
    _needs_the_offset_fix(loop)
    f = datafile if path == "native" else io.BytesIO(DATA)

    async def main() -> tuple[int, int, bytes]:
        transport, _sender, sink, server = await connected(loop)
        f.seek(123)
        at_end = await loop.sendfile(transport, f, len(DATA))
        assert f.tell() == len(DATA)
        from_zero = await loop.sendfile(transport, f, 0)
        assert f.tell() == len(DATA)
        transport.close()
        received = await sink.done
        server.close()
        return at_end, from_zero, received

    at_end, from_zero, received = run(loop, main())
    assert (at_end, from_zero) == (0, len(DATA)) and received == DATA
