"""TCP echo server on an asyncio event loop, for the ``aio_echo_*`` workloads.

    python -m bench._aio_echo_server --impl {qloop-core,qloop-fallback,asyncio,uvloop,rloop} \
        --api {protocol,streams}

Binds 127.0.0.1 on an ephemeral port, prints ``PORT <n>`` and serves until its stdin reaches
EOF (or it is terminated).  ``protocol``: an ``asyncio.Protocol`` whose ``data_received``
writes the data back (``loop.create_server``).  ``streams``: ``asyncio.start_server`` with a
handler that reads from its StreamReader and writes to its StreamWriter (``await drain()``).
TCP_NODELAY is set on every accepted connection, whatever the loop's default.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys

from bench._aio import AIO_IMPLS, load_loop_impl
from bench._echo_server import _listen


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class EchoProtocol(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport) -> None:
        _nodelay(transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def echo_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    _nodelay(writer.transport)
    read, write, drain = reader.read, writer.write, writer.drain
    try:
        while True:
            data = await read(65536)
            if not data:
                break
            write(data)
            await drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _start(api: str, lsock: socket.socket):
    if api == "protocol":
        loop = asyncio.get_running_loop()
        return await loop.create_server(EchoProtocol, sock=lsock, backlog=1024)
    return await asyncio.start_server(echo_stream, sock=lsock, backlog=1024)


def serve(impl, api: str, lsock: socket.socket) -> None:
    loop = impl.open()
    server = loop.run_until_complete(_start(api, lsock))

    def on_stdin() -> None:
        if not os.read(0, 4096):
            loop.stop()

    loop.add_reader(0, on_stdin)
    try:
        loop.run_forever()
    finally:
        loop.remove_reader(0)
        server.close()
        loop.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--impl", choices=AIO_IMPLS, required=True)
    ap.add_argument("--api", choices=("protocol", "streams"), required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args(argv)
    impl = load_loop_impl(args.impl)
    lsock = _listen(args.host)
    print(f"PORT {lsock.getsockname()[1]}", flush=True)
    serve(impl, args.api, lsock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
