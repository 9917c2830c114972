"""The asyncio event loop: datagram endpoints (UDP, Unix datagram sockets)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
from typing import Any, List, Optional

import pytest

from _aio_support import (  # noqa: F401 - fixtures
    Recorder,
    loop,
    loop_factory,
    loop_impl,
    run,
)


class Dgram(asyncio.DatagramProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, echo: bool = False) -> None:
        self.loop = loop
        self.echo = echo
        self.transport: Any = None
        self.received: List[Any] = []
        self.errors: List[BaseException] = []
        self.got = asyncio.Event()
        self.done = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, addr))
        self.got.set()
        if self.echo:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)
        self.got.set()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.done.set_result(exc)


async def wait_for(proto: Dgram, n: int) -> List[Any]:
    while len(proto.received) < n:
        proto.got.clear()
        await proto.got.wait()
    return proto.received


def test_udp_echo(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        st, server = await loop.create_datagram_endpoint(lambda: Dgram(loop, echo=True),
                                                         local_addr=("127.0.0.1", 0))
        addr = st.get_extra_info("sockname")
        assert st.get_extra_info("peername") is None
        assert isinstance(st, asyncio.Transport)  # what asyncio's own is
        if hasattr(loop, "aio_context"):  # asyncio's own is not a DatagramTransport
            assert isinstance(st, asyncio.DatagramTransport)
        ct, client = await loop.create_datagram_endpoint(lambda: Dgram(loop),
                                                         remote_addr=addr)
        assert ct.get_extra_info("peername") == addr
        for i in range(50):
            ct.sendto(b"msg %d" % i)
        got = await wait_for(client, 50)
        assert sorted(d for d, _ in got) == sorted(b"msg %d" % i for i in range(50))
        assert all(a == addr for _, a in got)
        assert all(a == ct.get_extra_info("sockname") for _, a in server.received)
        with pytest.raises(ValueError, match="Invalid address"):
            ct.sendto(b"x", ("127.0.0.1", 1))
        with pytest.raises(TypeError, match="data argument must be a bytes-like object"):
            ct.sendto("text")
        ct.sendto(bytearray(b"ba"), addr)  # the same address: fine
        assert (await wait_for(client, 51))[-1][0] == b"ba"
        assert ct.get_write_buffer_size() == 0
        ct.close()
        assert ct.is_closing()
        assert await client.done is None
        st.close()
        await server.done

    run(loop, main())


def test_unconnected_sendto_with_addresses(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        st, server = await loop.create_datagram_endpoint(lambda: Dgram(loop, echo=True),
                                                         local_addr=("127.0.0.1", 0))
        port = st.get_extra_info("sockname")[1]
        ct, client = await loop.create_datagram_endpoint(lambda: Dgram(loop),
                                                         local_addr=("127.0.0.1", 0))
        ct.sendto(b"numeric", ("127.0.0.1", port))
        ct.sendto(b"named", ("localhost", port))  # resolved by the socket module
        ct.sendto(b"again", ("127.0.0.1", port))
        got = await wait_for(client, 3)
        assert sorted(d for d, _ in got) == [b"again", b"named", b"numeric"]
        ct.close()
        st.close()
        await client.done
        await server.done

    run(loop, main())


def test_udp_ipv6(loop: asyncio.AbstractEventLoop) -> None:
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError:
        pytest.skip("no IPv6")

    async def main() -> None:
        st, server = await loop.create_datagram_endpoint(lambda: Dgram(loop, echo=True),
                                                         local_addr=("::1", 0))
        addr = st.get_extra_info("sockname")
        ct, client = await loop.create_datagram_endpoint(lambda: Dgram(loop),
                                                         local_addr=("::1", 0))
        ct.sendto(b"v6", addr)
        ct.sendto(b"v6 short", addr[:2])
        got = await wait_for(client, 2)
        assert {d for d, _ in got} == {b"v6", b"v6 short"}
        assert got[0][1] == addr
        ct.close()
        st.close()
        await client.done

    run(loop, main())


def test_error_received_and_callback_errors(loop: asyncio.AbstractEventLoop) -> None:
    rec = Recorder()
    loop.set_exception_handler(rec)

    class Broken(Dgram):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            super().datagram_received(data, addr)
            raise ValueError("bad datagram")

    async def main() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()
        s.close()
        ct, client = await loop.create_datagram_endpoint(lambda: Dgram(loop),
                                                         remote_addr=dead)
        for _ in range(3):
            ct.sendto(b"nobody listens")
            await asyncio.sleep(0.01)
            if client.errors:
                break
        assert client.errors and isinstance(client.errors[0], ConnectionRefusedError)
        assert not ct.is_closing()  # an error is not fatal
        ct.close()
        await client.done
        st, server = await loop.create_datagram_endpoint(lambda: Broken(loop),
                                                         local_addr=("127.0.0.1", 0))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"a", st.get_extra_info("sockname"))
        s.sendto(b"b", st.get_extra_info("sockname"))
        s.close()
        await wait_for(server, 2)
        assert not st.is_closing()
        st.close()
        await server.done

    run(loop, main())
    assert sum(isinstance(c.get("exception"), ValueError) for c in rec.contexts) == 2


def test_datagram_endpoint_on_sock_and_bad_arguments(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        t, p = await loop.create_datagram_endpoint(lambda: Dgram(loop), sock=s)
        assert t.get_extra_info("socket").fileno() == s.fileno()
        t.abort()
        assert await p.done is None
        s2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with pytest.raises(ValueError, match="socket modifier keyword arguments"):
                await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=s2,
                                                    local_addr=("127.0.0.1", 0))
        finally:
            s2.close()
        t3 = socket.socket()
        try:
            with pytest.raises(ValueError, match="(A datagram socket|A UDP Socket) was expected"):
                await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=t3)
        finally:
            t3.close()
        with pytest.raises(ValueError, match="unexpected address family"):
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol)
        with pytest.raises(TypeError, match="2-tuple is expected"):
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                local_addr="127.0.0.1")
        with pytest.raises(TypeError):  # removed in asyncio 3.11
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                local_addr=("127.0.0.1", 0),
                                                reuse_address=True)
        t, p = await loop.create_datagram_endpoint(lambda: Dgram(loop), family=socket.AF_INET,
                                                   allow_broadcast=True, reuse_port=True)
        sock = t.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        t.close()
        await p.done

    run(loop, main())


def test_unix_datagram_endpoint(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as d:
            spath, cpath = os.path.join(d, "server"), os.path.join(d, "client")
            st, server = await loop.create_datagram_endpoint(
                lambda: Dgram(loop, echo=True), local_addr=spath, family=socket.AF_UNIX)
            ct, client = await loop.create_datagram_endpoint(
                lambda: Dgram(loop), local_addr=cpath, remote_addr=spath,
                family=socket.AF_UNIX)
            ct.sendto(b"unix dgram")
            got = await wait_for(client, 1)
            assert got == [(b"unix dgram", spath)]
            assert server.received == [(b"unix dgram", cpath)]
            ct.close()
            st.close()
            await client.done
            with pytest.raises(TypeError, match="string is expected"):
                await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                    local_addr=("x", 1),
                                                    family=socket.AF_UNIX)

    run(loop, main())


def test_empty_datagram(loop: asyncio.AbstractEventLoop) -> None:
    if not hasattr(loop, "aio_context") and sys.version_info < (3, 13):
        pytest.skip("asyncio < 3.13 drops empty datagrams")

    async def main() -> None:
        st, server = await loop.create_datagram_endpoint(lambda: Dgram(loop),
                                                         local_addr=("127.0.0.1", 0))
        ct, client = await loop.create_datagram_endpoint(
            lambda: Dgram(loop), remote_addr=st.get_extra_info("sockname"))
        ct.sendto(b"")
        assert (await wait_for(server, 1))[0][0] == b""
        ct.close()
        st.close()
        await server.done

    run(loop, main())
