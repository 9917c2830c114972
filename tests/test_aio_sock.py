"""The asyncio event loop: the sock_* coroutines on non-blocking sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from _aio_support import run


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    s = socket.create_server(("127.0.0.1", 0))
    s.setblocking(False)
    yield s
    s.close()


@pytest.fixture
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_connect_accept_send_recv(loop: asyncio.AbstractEventLoop,
                                  listener: socket.socket) -> None:
    async def main() -> None:
        client = socket.socket()
        client.setblocking(False)
        accept = loop.create_task(loop.sock_accept(listener))
        await loop.sock_connect(client, listener.getsockname())
        conn, addr = await accept
        assert addr == client.getsockname()
        assert conn.gettimeout() == 0
        try:
            recv = loop.create_task(loop.sock_recv(conn, 100))
            await asyncio.sleep(0)
            assert not recv.done()  # waits for data
            await loop.sock_sendall(client, b"hello")
            assert await recv == b"hello"
            payload = b"p" * (8 << 20)  # more than the socket buffers: sendall waits
            sender = loop.create_task(loop.sock_sendall(client, payload))
            got = bytearray()
            buf = bytearray(1 << 16)
            while len(got) < len(payload):
                n = await loop.sock_recv_into(conn, buf)
                got += buf[:n]
            await sender
            assert got == payload
            client.close()
            assert await loop.sock_recv(conn, 10) == b""
        finally:
            conn.close()
            client.close()

    run(loop, main(), timeout=30)


def test_udp(loop: asyncio.AbstractEventLoop,
             udp_pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = udp_pair

    async def main() -> None:
        recv = loop.create_task(loop.sock_recvfrom(b, 100))
        await asyncio.sleep(0)
        assert await loop.sock_sendto(a, b"dgram", b.getsockname()) == 5
        assert await recv == (b"dgram", a.getsockname())
        buf = bytearray(10)
        recv_into = loop.create_task(loop.sock_recvfrom_into(b, buf, 3))
        await asyncio.sleep(0)
        await loop.sock_sendto(a, b"abcdef", b.getsockname())
        n, addr = await recv_into
        assert (n, bytes(buf[:n]), addr) == (3, b"abc", a.getsockname())
        await loop.sock_sendto(a, b"xyz", b.getsockname())
        n, _ = await loop.sock_recvfrom_into(b, buf)
        assert bytes(buf[:n]) == b"xyz"

    run(loop, main())


def test_connect_refused_and_resolution(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        c = socket.socket()
        c.setblocking(False)
        try:
            with pytest.raises(ConnectionRefusedError):
                await loop.sock_connect(c, ("127.0.0.1", port))
        finally:
            c.close()
        c = socket.socket()
        c.setblocking(False)
        try:
            with pytest.raises(OSError):
                await loop.sock_connect(c, ("localhost", port))  # resolved, then refused
        finally:
            c.close()

    run(loop, main())


def test_blocking_socket_is_refused(loop: asyncio.AbstractEventLoop) -> None:
    if not hasattr(loop, "aio_context"):
        loop.set_debug(True)  # asyncio checks only in debug mode; qloop always

    async def main() -> None:
        s = socket.socket()
        try:
            for coro in (lambda: loop.sock_recv(s, 1), lambda: loop.sock_sendall(s, b"x"),
                         lambda: loop.sock_accept(s),
                         lambda: loop.sock_connect(s, ("127.0.0.1", 1))):
                with pytest.raises(ValueError, match="the socket must be non-blocking"):
                    await coro()
        finally:
            s.close()

    run(loop, main())


def test_cancelled_sock_recv_frees_the_fd(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            task = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0)
            fut = loop.create_future()
            loop.add_reader(a, lambda: fut.done() or fut.set_result(a.recv(10)))
            b.send(b"after")
            assert await fut == b"after"
            loop.remove_reader(a)
        finally:
            a.close()
            b.close()

    run(loop, main())


def test_sock_methods_on_a_closed_loop(loop: asyncio.AbstractEventLoop) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        loop.close()
        coro: Any = loop.sock_recv(a, 1)
        with pytest.raises(RuntimeError):
            coro.send(None)
        coro.close()
    finally:
        a.close()
        b.close()
