"""The asyncio event loop: TCP and Unix stream transports through create_connection and
create_server (qloop's two implementations and asyncio's loop as the reference)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from asyncio import trsock
from typing import Any

import pytest

from _aio_support import (
    Recorder,
    RecordingProtocol,
    collect,
    run,
    run_once,
)


class Proto(RecordingProtocol, asyncio.Protocol):
    """Records what happens to it; ``done`` resolves on connection_lost."""

    def __init__(self, loop: asyncio.AbstractEventLoop, echo: bool = False,
                 keep_open_on_eof: bool = False) -> None:
        super().__init__(loop)
        self.echo = echo
        self.keep_open_on_eof = keep_open_on_eof
        self.data = bytearray()
        self.got_data = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        self.data += data
        self.got_data.set()
        if self.echo:
            self.transport.write(data)

    def eof_received(self) -> bool:
        self.events.append("eof")
        return self.keep_open_on_eof


async def wait_for_data(proto: Proto, n: int) -> bytes:
    while len(proto.data) < n:
        proto.got_data.clear()
        await proto.got_data.wait()
    return bytes(proto.data)


async def echo_pair(loop: asyncio.AbstractEventLoop, **server_kw: Any
                    ) -> tuple[Any, Proto, list[Proto], Any]:
    served: list[Proto] = []

    def factory() -> Proto:
        p = Proto(loop, echo=True)
        served.append(p)
        return p

    server = await loop.create_server(factory, "127.0.0.1", 0, **server_kw)
    port = server.sockets[0].getsockname()[1]
    transport, client = await loop.create_connection(lambda: Proto(loop), "127.0.0.1", port)
    return server, client, served, transport


def test_echo_and_extra_info(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        server, client, served, tr = await echo_pair(loop)
        assert client.events == ["made"]
        tr.write(b"hello")
        tr.write(bytearray(b" "))
        tr.write(memoryview(b"world"))
        tr.writelines([b"!", bytearray(b"!")])
        assert await wait_for_data(client, 13) == b"hello world!!"
        sock = tr.get_extra_info("socket")
        assert isinstance(sock, trsock.TransportSocket)
        assert tr.get_extra_info("sockname") == sock.getsockname()
        assert tr.get_extra_info("peername") == server.sockets[0].getsockname()
        assert tr.get_extra_info("nothing", "default") == "default"
        assert tr.get_protocol() is client
        assert isinstance(tr, asyncio.Transport)
        assert isinstance(tr, (asyncio.ReadTransport, asyncio.WriteTransport))
        assert "fd=" in repr(tr) and "read=polling" in repr(tr)
        assert served[0].transport.get_extra_info("peername") == sock.getsockname()
        assert tr.is_reading() and not tr.is_closing()
        assert tr.can_write_eof()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        tr.close()
        assert tr.is_closing()
        assert await client.done is None
        assert await served[0].done is None
        assert served[0].events == ["made", "eof", ("lost", None)]
        assert "closed" in repr(tr)
        tr.close()  # idempotent
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_buffered_protocol(loop: asyncio.AbstractEventLoop) -> None:
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(7)
            self.received = bytearray()
            self.sizes: list[int] = []
            self.done = loop.create_future()

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def get_buffer(self, sizehint: int) -> bytearray:
            self.sizes.append(sizehint)
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            self.received += self.buf[:nbytes]

        def eof_received(self) -> None:
            return None

        def connection_lost(self, exc: BaseException | None) -> None:
            self.done.set_result(exc)

    async def main() -> bytes:
        proto = Buffered()
        server = await loop.create_server(lambda: proto, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        tr.write(b"0123456789" * 10)
        tr.close()
        await proto.done
        server.close()
        await server.wait_closed()
        assert proto.sizes and all(s == -1 for s in proto.sizes)
        return bytes(proto.received)

    assert run(loop, main()) == b"0123456789" * 10


def _fatal_get_buffer(loop: asyncio.AbstractEventLoop, buffer: Any) -> tuple[Any, Recorder]:
    """Serve one connection with a BufferedProtocol whose get_buffer() returns ``buffer``;
    send it a byte; what connection_lost() got, and what the exception handler saw."""
    rec = Recorder()
    loop.set_exception_handler(rec)

    class Proto(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.done = loop.create_future()

        def get_buffer(self, sizehint: int) -> Any:
            return buffer

        def buffer_updated(self, nbytes: int) -> None:
            raise AssertionError("not reached")

        def connection_lost(self, exc: BaseException | None) -> None:
            self.done.set_result(exc)

    async def main() -> Any:
        proto = Proto()
        server = await loop.create_server(lambda: proto, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        tr.write(b"x")
        exc = await proto.done
        tr.close()
        server.close()
        await server.wait_closed()
        return exc

    return run(loop, main()), rec


def test_buffered_protocol_empty_buffer_is_fatal(loop: asyncio.AbstractEventLoop) -> None:
    exc, rec = _fatal_get_buffer(loop, bytearray())
    assert isinstance(exc, RuntimeError)
    assert any("get_buffer() call failed" in c["message"] for c in rec.contexts)


def test_buffered_protocol_read_only_buffer_is_fatal(qloop_loop: asyncio.AbstractEventLoop) -> None:
    """A read-only buffer from get_buffer() fails the connection with the same BufferError and
    message on both implementations."""
    exc, rec = _fatal_get_buffer(qloop_loop, b"read-only")
    assert isinstance(exc, BufferError)
    assert str(exc) == "get_buffer() returned a read-only buffer"
    assert any("get_buffer() call failed" in c["message"] for c in rec.contexts)


def test_flow_control(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        lsock = socket.create_server(("127.0.0.1", 0))
        port = lsock.getsockname()[1]
        tr, proto = await loop.create_connection(lambda: Proto(loop), "127.0.0.1", port)
        peer, _ = lsock.accept()
        peer.setblocking(False)
        lsock.close()
        tr.set_write_buffer_limits(high=1000, low=100)
        assert tr.get_write_buffer_limits() == (100, 1000)
        chunk = b"x" * 65536
        while "pause" not in proto.events:
            tr.write(chunk)
        assert tr.get_write_buffer_size() > 1000
        total = 0
        while "resume" not in proto.events:
            try:
                total += len(peer.recv(1 << 20))
            except BlockingIOError:
                await asyncio.sleep(0.001)
        assert tr.get_write_buffer_size() <= 100
        tr.close()
        while True:
            try:
                data = peer.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.001)
                continue
            if not data:
                break
            total += len(data)
        peer.close()
        await proto.done
        assert total % len(chunk) == 0 and total >= 65536

    run(loop, main())


@pytest.mark.parametrize("high, low", [(10, 20), (-1, None), (None, -4)])
def test_bad_write_buffer_limits(loop: asyncio.AbstractEventLoop, high: Any, low: Any) -> None:
    async def main() -> None:
        server, _client, _served, tr = await echo_pair(loop)
        with pytest.raises(ValueError, match="must be >="):
            tr.set_write_buffer_limits(high=high, low=low)
        tr.set_write_buffer_limits()
        assert tr.get_write_buffer_limits() == (16384, 65536)
        tr.set_write_buffer_limits(low=10)
        assert tr.get_write_buffer_limits() == (10, 40)
        tr.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_pause_and_resume_reading(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        server, client, _served, tr = await echo_pair(loop)
        tr.pause_reading()
        assert not tr.is_reading()
        tr.pause_reading()  # idempotent
        tr.write(b"ping")
        for _ in range(20):
            await asyncio.sleep(0)
        assert client.data == b""
        tr.resume_reading()
        assert tr.is_reading()
        assert await wait_for_data(client, 4) == b"ping"
        tr.close()
        assert not tr.is_reading()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_write_eof_and_half_close(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        served: list[Proto] = []

        def factory() -> Proto:
            p = Proto(loop, keep_open_on_eof=True)
            served.append(p)
            return p

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, client = await loop.create_connection(lambda: Proto(loop), "127.0.0.1", port)
        tr.write(b"request")
        tr.write_eof()
        with pytest.raises(RuntimeError, match="Cannot call write\\(\\) after write_eof\\(\\)"):
            tr.write(b"more")
        tr.write_eof()  # idempotent
        while "eof" not in served[0].events:
            await asyncio.sleep(0.001)
        assert served[0].data == b"request"
        # the server side kept its transport open: it can still answer
        served[0].transport.write(b"response")
        served[0].transport.close()
        assert await client.done is None
        assert client.data == b"response"
        assert client.events[-2:] == ["eof", ("lost", None)]
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_abort_drops_buffered_data(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        lsock = socket.create_server(("127.0.0.1", 0))
        port = lsock.getsockname()[1]
        tr, proto = await loop.create_connection(lambda: Proto(loop), "127.0.0.1", port)
        peer, _ = lsock.accept()
        lsock.close()
        while not tr.get_write_buffer_size():
            tr.write(b"y" * 65536)
        tr.abort()
        assert tr.get_write_buffer_size() == 0
        assert tr.is_closing()
        assert await proto.done is None
        tr.abort()  # idempotent
        peer.close()

    run(loop, main())


def test_write_errors_and_writes_after_close(loop: asyncio.AbstractEventLoop,
                                             caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        server, client, _served, tr = await echo_pair(loop)
        # asyncio's words (changed in Python 3.13)
        words = ("data argument must be a bytes, bytearray, or memoryview object"
                 if sys.version_info >= (3, 13) else "data argument must be a bytes-like object")
        with pytest.raises(TypeError, match=f"^{words}, not 'str'$"):
            tr.write("text")
        with pytest.raises(TypeError):
            tr.write(None)
        tr.write(b"")  # nothing
        tr.abort()
        await client.done
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(7):
                tr.write(b"late")  # ignored, then logged
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert any("socket.send() raised exception." in r.getMessage() for r in caplog.records)


def test_peer_reset_is_connection_lost(loop: asyncio.AbstractEventLoop) -> None:
    import struct

    async def main() -> Any:
        lsock = socket.create_server(("127.0.0.1", 0))
        port = lsock.getsockname()[1]
        tr, proto = await loop.create_connection(lambda: Proto(loop), "127.0.0.1", port)
        peer, _ = lsock.accept()
        lsock.close()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # RST
        exc = await proto.done
        assert tr.is_closing()
        return exc

    exc = run(loop, main())
    assert exc is None or isinstance(exc, ConnectionResetError)


def test_protocol_error_is_fatal(loop: asyncio.AbstractEventLoop) -> None:
    rec = Recorder()
    loop.set_exception_handler(rec)

    class Broken(Proto):
        def data_received(self, data: bytes) -> None:
            raise ValueError("bad data")

    async def main() -> Any:
        broken: list[Broken] = []
        server = await loop.create_server(lambda: broken.append(Broken(loop)) or broken[-1],
                                          "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, client = await loop.create_connection(lambda: Proto(loop), "127.0.0.1", port)
        tr.write(b"x")
        exc = await broken[0].done
        await client.done
        server.close()
        await server.wait_closed()
        return exc

    exc = run(loop, main())
    assert isinstance(exc, ValueError)
    msgs = [c["message"] for c in rec.contexts]
    assert "Fatal error: protocol.data_received() call failed." in msgs
    ctx = rec.contexts[0]
    assert ctx["protocol"] is not None and ctx["transport"] is not None


def test_unclosed_transport_warns(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> Any:
        server, _client, _served, tr = await echo_pair(loop)
        tr.pause_reading()  # not registered: only the test holds it
        server.close()
        return server

    server = run(loop, main())
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        collect()
    for p in list(server._clients) if hasattr(server, "_clients") else []:
        p.close()
    run_once(loop)


def test_add_reader_on_a_transport_fd_is_refused(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        server, client, _served, tr = await echo_pair(loop)
        fd = tr.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, print)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.remove_writer(fd)
        tr.close()
        await client.done
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_large_transfer(loop: asyncio.AbstractEventLoop) -> None:
    payload = bytes(range(256)) * 4096 * 4  # 4 MiB

    async def main() -> None:
        server, client, _served, tr = await echo_pair(loop)
        tr.write(payload)
        got = await wait_for_data(client, len(payload))
        assert got == payload
        tr.close()
        await client.done
        server.close()
        await server.wait_closed()

    run(loop, main(), timeout=30)


# --------------------------------------------------------------------------------------------
# create_connection


def test_connection_refused(loop: asyncio.AbstractEventLoop) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectionRefusedError):
        run(loop, loop.create_connection(asyncio.Protocol, "127.0.0.1", port))
    if sys.version_info >= (3, 12) or hasattr(loop, "aio_context"):
        with pytest.raises(ExceptionGroup) as info:
            run(loop, loop.create_connection(asyncio.Protocol, "127.0.0.1", port,
                                             all_errors=True))
        assert isinstance(info.value.exceptions[0], ConnectionRefusedError)


def test_create_connection_bad_arguments(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        s = socket.socket()
        try:
            with pytest.raises(ValueError, match="host/port and sock"):
                await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, sock=s)
        finally:
            s.close()
        with pytest.raises(ValueError, match="host and port was not specified"):
            await loop.create_connection(asyncio.Protocol)
        with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1,
                                         server_hostname="x")
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1,
                                         ssl_handshake_timeout=1)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.create_connection(asyncio.Protocol, sock=u)
        finally:
            u.close()

    run(loop, main())


def test_create_connection_with_sock_and_local_addr(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        server = await loop.create_server(lambda: Proto(loop, echo=True), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, p = await loop.create_connection(lambda: Proto(loop), "127.0.0.1", port,
                                             local_addr=("127.0.0.1", 0))
        assert tr.get_extra_info("sockname")[0] == "127.0.0.1"
        tr.close()
        await p.done
        s = socket.create_connection(("127.0.0.1", port))
        tr, p = await loop.create_connection(lambda: Proto(loop), sock=s)
        tr.write(b"via sock")
        assert await wait_for_data(p, 8) == b"via sock"
        tr.close()
        await p.done
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_happy_eyeballs(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        server = await loop.create_server(lambda: Proto(loop, echo=True), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()

        async def fake_getaddrinfo(host: Any, port_: Any, **kw: Any) -> list[Any]:
            assert host == "multi.example"
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", dead_port, 0, 0)),
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", dead_port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]

        loop.getaddrinfo = fake_getaddrinfo  # type: ignore[method-assign]
        try:
            for kw in ({"happy_eyeballs_delay": 0.05}, {"happy_eyeballs_delay": 0.05,
                                                       "interleave": 2}, {}):
                tr, p = await loop.create_connection(lambda: Proto(loop), "multi.example",
                                                     port, **kw)
                assert tr.get_extra_info("peername")[:2] == ("127.0.0.1", port)
                tr.close()
                await p.done
        finally:
            del loop.getaddrinfo
        server.close()
        await server.wait_closed()

    run(loop, main())
