"""aio_tcp_throughput: one TCP connection on 127.0.0.1, 64 KiB writes, 1 GiB per round.

Both ends are Protocols on the loop under test (``loop.create_server`` +
``loop.create_connection``, set up untimed): the sender writes 64 KiB chunks with
``transport.write()`` and yields to the loop when its write buffer passes 256 KiB
(``pause_writing`` / ``resume_writing`` flow control, the high-water mark set to 256 KiB), the
receiver counts what ``data_received`` gets; the round ends when every byte arrived.  ops are
bytes.
Bar: qloop-core >= the best peer; qloop-fallback >= asyncio.
"""

from __future__ import annotations

import asyncio

import pytest

from bench._common import run_rounds, scaled

CHUNK = 64 * 1024
HIGH_WATER = 256 * 1024  # the sender yields when its write buffer passes this
TOTAL = max(1, scaled(1 << 30) // CHUNK) * CHUNK


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.got = 0
        self.want = 0
        self.done: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= self.want and self.done is not None and not self.done.done():
            self.done.set_result(self.got)

    def connection_lost(self, exc) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionError("the sender closed early"))


class Source(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.left = 0
        self.chunk = b"\x5a" * CHUNK

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()

    def pump(self) -> None:
        write = self.transport.write
        chunk = self.chunk
        while self.left > 0 and not self.paused:
            self.left -= CHUNK
            write(chunk)  # may call pause_writing() before it returns


async def _connect(loop):
    sink = Sink()
    server = await loop.create_server(lambda: sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, source = await loop.create_connection(Source, "127.0.0.1", port)
    while sink.transport is None:
        await asyncio.sleep(0)
    return server, source, sink


async def _transfer(source: Source, sink: Sink, total: int) -> int:
    sink.got = 0
    sink.want = total
    sink.done = asyncio.get_running_loop().create_future()
    source.left = total
    source.pump()
    return await sink.done


def _close(loop, server, source, sink) -> None:
    if loop.is_closed():
        return
    for proto in (source, sink):
        if proto.transport is not None:
            proto.transport.close()
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


@pytest.mark.benchmark(group="aio_tcp_throughput")
def test_aio_tcp_throughput(benchmark, loop_impl):
    def setup():
        loop = loop_impl.open()
        return (loop, *loop.run_until_complete(_connect(loop)))

    run_rounds(
        benchmark,
        lambda loop, server, source, sink: loop.run_until_complete(
            _transfer(source, sink, TOTAL)
        ),
        setup=setup,
        cleanup=_close,
        ops=TOTAL,
        expect=TOTAL,
        unit="bytes",
        chunk_bytes=CHUNK,
    )
