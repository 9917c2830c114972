"""TCP echo server for the ``echo`` workload; one process per implementation.

    python -m bench._echo_server --impl {qloop-core,qloop-fallback,asyncio,uvloop} [--fdmon M]

Binds 127.0.0.1 on an ephemeral port, prints ``PORT <n>`` and serves until its stdin reaches
EOF (or it is terminated).  qloop: non-blocking sockets and ``ctx.set_fd_handler`` driven by
``while True: ctx.poll(True)``; asyncio/uvloop: an ``asyncio.Protocol`` echo server.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys

from bench._common import IMPLS, load_impl


def _listen(host: str, backlog: int = 1024) -> socket.socket:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, 0))
    lsock.listen(backlog)
    lsock.setblocking(False)
    return lsock


class _Stop(Exception):
    pass


def serve_qloop(impl, lsock: socket.socket, fdmon: str = "auto") -> None:
    ctx = impl.open(fdmon=fdmon)
    set_fd_handler = ctx.set_fd_handler

    class Conn:
        __slots__ = ("buf", "fd", "sock")

        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock
            self.fd = sock.fileno()
            self.buf = b""

        def on_read(self) -> None:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            if not data:
                self.close()
                return
            if self.buf:  # still draining an earlier partial write: keep the order
                self.buf += data
                return
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close()
                return
            if sent < len(data):
                self.buf = data[sent:]
                set_fd_handler(self.fd, io_read=self.on_read, io_write=self.on_write)

        def on_write(self) -> None:
            try:
                sent = self.sock.send(self.buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            self.buf = self.buf[sent:]
            if not self.buf:
                set_fd_handler(self.fd, io_read=self.on_read)

        def close(self) -> None:
            set_fd_handler(self.fd)
            self.sock.close()

    def on_accept() -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = Conn(conn)
            set_fd_handler(c.fd, io_read=c.on_read)

    def on_stdin() -> None:
        import os

        if not os.read(0, 4096):
            raise _Stop

    set_fd_handler(lsock.fileno(), io_read=on_accept)
    set_fd_handler(0, io_read=on_stdin)
    poll = ctx.poll
    try:
        while True:
            poll(True)
    except _Stop:
        pass


class EchoProtocol(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def serve_asyncio(impl, lsock: socket.socket) -> None:
    loop = impl.open()
    server = loop.run_until_complete(
        loop.create_server(EchoProtocol, sock=lsock, backlog=1024)
    )

    def on_stdin() -> None:
        import os

        if not os.read(0, 4096):
            loop.stop()

    loop.add_reader(0, on_stdin)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--impl", choices=IMPLS, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--fdmon", default="auto", help="qloop: the AioContext's fd monitor")
    args = ap.parse_args(argv)
    impl = load_impl(args.impl)
    lsock = _listen(args.host)
    print(f"PORT {lsock.getsockname()[1]}", flush=True)
    if impl.is_qloop:
        serve_qloop(impl, lsock, args.fdmon)
    else:
        serve_asyncio(impl, lsock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
