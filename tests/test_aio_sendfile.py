"""The asyncio event loop: sock_sendfile and sendfile."""

from __future__ import annotations

import asyncio
import io
import socket
from typing import Any, Iterator

import pytest

from _aio_support import (  # noqa: F401 - fixtures
    loop,
    loop_factory,
    loop_impl,
    run,
)
from test_aio_transports import Proto, wait_for_data

DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def datafile(tmp_path: Any) -> Iterator[Any]:
    path = tmp_path / "data"
    path.write_bytes(DATA)
    with open(path, "rb") as f:
        yield f


async def _pair(loop: asyncio.AbstractEventLoop) -> Any:
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.setblocking(False)
    client = socket.socket()
    client.setblocking(False)
    accept = loop.create_task(loop.sock_accept(lsock))
    await loop.sock_connect(client, lsock.getsockname())
    conn, _ = await accept
    lsock.close()
    return client, conn


async def _recv_all(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = await loop.sock_recv(sock, 1 << 20)
        if not chunk:
            break
        out += chunk
    return bytes(out)


def test_sock_sendfile(loop: asyncio.AbstractEventLoop, datafile: Any) -> None:
    async def main() -> None:
        client, conn = await _pair(loop)
        try:
            receiver = loop.create_task(_recv_all(loop, conn, len(DATA)))
            assert await loop.sock_sendfile(client, datafile) == len(DATA)
            assert await receiver == DATA
            assert datafile.tell() == len(DATA)
            receiver = loop.create_task(_recv_all(loop, conn, 1000))
            assert await loop.sock_sendfile(client, datafile, 5000, 1000) == 1000
            assert await receiver == DATA[5000:6000]
            assert datafile.tell() == 6000
        finally:
            client.close()
            conn.close()

    run(loop, main(), timeout=30)


def test_sock_sendfile_fallback_and_errors(loop: asyncio.AbstractEventLoop,
                                           datafile: Any) -> None:
    async def main() -> None:
        client, conn = await _pair(loop)
        try:
            memfile = io.BytesIO(b"from memory")  # no fd: no os.sendfile
            with pytest.raises(asyncio.SendfileNotAvailableError):
                await loop.sock_sendfile(client, memfile, fallback=False)
            assert await loop.sock_sendfile(client, memfile) == 11  # read and sent
            assert await _recv_all(loop, conn, 11) == b"from memory"
            with pytest.raises(ValueError, match="count must be a positive integer"):
                await loop.sock_sendfile(client, datafile, 0, 0)
            with pytest.raises(TypeError, match="offset must be a non-negative integer"):
                await loop.sock_sendfile(client, datafile, "0")
            with pytest.raises(ValueError, match="offset must be a non-negative integer"):
                await loop.sock_sendfile(client, datafile, -1)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.setblocking(False)
            try:
                with pytest.raises(ValueError, match="only SOCK_STREAM"):
                    await loop.sock_sendfile(u, datafile)
            finally:
                u.close()
        finally:
            client.close()
            conn.close()

    run(loop, main(), timeout=30)


def test_transport_sendfile(loop: asyncio.AbstractEventLoop, datafile: Any) -> None:
    async def main() -> None:
        served = []
        server = await loop.create_server(lambda: served.append(Proto(loop)) or served[-1],
                                          "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(lambda: Proto(loop), "127.0.0.1", port)
        tr.write(b"header:")
        sent = await loop.sendfile(tr, datafile)
        assert sent == len(DATA)
        tr.write(b":trailer")
        while not served:
            await asyncio.sleep(0.001)
        got = await wait_for_data(served[0], len(DATA) + 15)
        assert got == b"header:" + DATA + b":trailer"
        assert tr.is_reading()
        tr.close()
        await proto.done
        server.close()
        await server.wait_closed()

    run(loop, main(), timeout=30)


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
