"""aio_udp_echo: 1 KiB UDP datagrams echoed on 127.0.0.1, N round trips (default 100,000).

Both endpoints are DatagramProtocols on the loop under test (``create_datagram_endpoint``, set
up untimed): the server sends every datagram back to its sender; the client keeps WINDOW
datagrams in flight and sends a new one for each echo until N came back.  A round that stalls
(lost datagrams) fails after ROUND_TIMEOUT_S instead of hanging.
Bar: qloop-core >= the best peer; qloop-fallback >= asyncio.
"""

from __future__ import annotations

import asyncio

import pytest

from bench._common import run_rounds, scaled

MSIZE = 1024
WINDOW = 16
N = scaled(100_000, minimum=WINDOW)
ROUND_TIMEOUT_S = 120.0


class EchoServer(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(data, addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport = None
        self.msg = b"u" * MSIZE
        self.received = 0
        self.to_send = 0
        self.done: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def start(self, n: int, done: asyncio.Future) -> None:
        self.received = 0
        self.done = done
        self.to_send = n
        for _ in range(min(WINDOW, n)):
            self.to_send -= 1
            self.transport.sendto(self.msg)

    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) != MSIZE:
            self.done.set_exception(
                RuntimeError(f"echo of {len(data)} bytes for {MSIZE}")
            )
            return
        self.received += 1
        if self.to_send > 0:
            self.to_send -= 1
            self.transport.sendto(self.msg)
        elif self.received == N and not self.done.done():
            self.done.set_result(self.received)

    def error_received(self, exc) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)


async def _endpoints(loop):
    server, _ = await loop.create_datagram_endpoint(
        EchoServer, local_addr=("127.0.0.1", 0)
    )
    addr = server.get_extra_info("sockname")
    client_transport, client = await loop.create_datagram_endpoint(
        Client, remote_addr=addr
    )
    return server, client_transport, client


async def _round(client: Client) -> int:
    done = asyncio.get_running_loop().create_future()
    client.start(N, done)
    try:
        return await asyncio.wait_for(done, ROUND_TIMEOUT_S)
    except TimeoutError:
        raise RuntimeError(
            f"UDP echo stalled: {client.received} of {N} came back"
        ) from None


def _close(loop, server, client_transport, client) -> None:
    if loop.is_closed():
        return
    server.close()
    client_transport.close()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


@pytest.mark.benchmark(group="aio_udp_echo")
def test_aio_udp_echo(benchmark, loop_impl):
    def setup():
        loop = loop_impl.open()
        return (loop, *loop.run_until_complete(_endpoints(loop)))

    run_rounds(
        benchmark,
        lambda loop, server, client_transport, client: loop.run_until_complete(
            _round(client)
        ),
        setup=setup,
        cleanup=_close,
        ops=N,
        expect=N,
        unit="round trips",
        message_bytes=MSIZE,
        window=WINDOW,
    )
