"""The asyncio event loop: once a transport's connection is lost its fd is closed, and the
number may be reused at once by another socket; writes to the old transport must never reach
that socket (they are ignored, as writes after a lost connection are).  qloop's loops only:
asyncio's transports raise AttributeError there."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from _aio_support import run


def reuse_fd(fd: int) -> tuple[socket.socket, socket.socket]:
    """A fresh socket pair whose first socket has number ``fd`` (now free)."""
    a, b = socket.socketpair()
    if a.fileno() != fd:
        os.dup2(a.fileno(), fd)
        a.close()
        a = socket.socket(fileno=fd)
    b.setblocking(False)
    return a, b


def assert_nothing_arrives(peer: socket.socket) -> None:
    try:
        data = peer.recv(100)
    except BlockingIOError:
        return
    raise AssertionError(f"{data!r} reached an unrelated socket")


def test_stream_write_after_a_flushed_close(qloop_loop: Any) -> None:
    loop = qloop_loop

    async def main() -> None:
        a, b = socket.socketpair()
        b.setblocking(False)
        fd = a.fileno()
        t, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        t.write(b"x" * 4_000_000)  # more than the socket takes: close() waits for it
        t.close()
        received = 0
        while received < 4_000_000:
            received += len(await loop.sock_recv(b, 1 << 20))
        for _ in range(3):
            await asyncio.sleep(0)  # connection_lost ran: the fd is closed
        other, peer = reuse_fd(fd)
        for _ in range(8):
            t.write(b"stale")  # ignored
        assert_nothing_arrives(peer)
        for s in (other, peer, b):
            s.close()

    run(loop, main())


def test_datagram_sendto_after_a_flushed_close(qloop_loop: Any, tmp_path: Any) -> None:
    loop = qloop_loop
    path = str(tmp_path / "peer.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)

    async def main() -> None:
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.connect(path)
        sender.setblocking(False)
        fd = sender.fileno()
        lost = loop.create_future()

        class Proto(asyncio.DatagramProtocol):
            def connection_lost(self, exc: Any) -> None:
                lost.set_result(exc)

        t, _ = await loop.create_datagram_endpoint(Proto, sock=sender)
        while not t.get_write_buffer_size():  # the receiver's queue is full
            t.sendto(b"d" * 1000)
        t.close()  # after the buffered datagrams
        while not lost.done():
            try:
                receiver.recv(2000)
            except BlockingIOError:
                await asyncio.sleep(0.001)
        other, peer = reuse_fd(fd)
        for _ in range(8):
            t.sendto(b"stale")  # ignored
        assert_nothing_arrives(peer)
        other.close()
        peer.close()

    try:
        run(loop, main())
    finally:
        receiver.close()
