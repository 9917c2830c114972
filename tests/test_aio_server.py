"""The asyncio event loop: create_server and Server, Unix sockets, connect_accepted_socket,
TLS (asyncio's sslproto over qloop's transports), asyncio streams, a server inside
qloop.main_loop()."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys
import tempfile
from asyncio import trsock
from types import ModuleType
from typing import Any

import pytest

from _aio_support import Recorder, run
from test_aio_transports import Proto, wait_for_data


async def roundtrip(loop: asyncio.AbstractEventLoop, connect: Any, payload: bytes) -> bytes:
    tr, p = await connect()
    tr.write(payload)
    data = await wait_for_data(p, len(payload))
    tr.close()
    await p.done
    return data


def test_server_api(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        server = await loop.create_server(lambda: Proto(loop, echo=True), "127.0.0.1", 0,
                                          start_serving=False, backlog=5)
        assert not server.is_serving()
        assert server.get_loop() is loop
        socks = server.sockets
        assert len(socks) == 1 and isinstance(socks[0], trsock.TransportSocket)
        await server.start_serving()
        assert server.is_serving()
        port = socks[0].getsockname()[1]
        got = await roundtrip(loop, lambda: loop.create_connection(
            lambda: Proto(loop), "127.0.0.1", port), b"ping")
        assert got == b"ping"
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        server.close()  # idempotent
        with pytest.raises(OSError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)

    run(loop, main())


def test_wait_closed_waits_for_connections(loop: asyncio.AbstractEventLoop) -> None:
    if sys.version_info < (3, 12) and not hasattr(loop, "aio_context"):
        pytest.skip("asyncio < 3.12: wait_closed() does not wait for connections")

    async def main() -> None:
        served: list[Proto] = []
        server = await loop.create_server(lambda: served.append(Proto(loop)) or served[-1],
                                          "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, p = await loop.create_connection(lambda: Proto(loop), "127.0.0.1", port)
        while not served:
            await asyncio.sleep(0.001)
        server.close()
        closed = loop.create_task(server.wait_closed())
        for _ in range(10):
            await asyncio.sleep(0)
        assert not closed.done()  # the accepted connection is still open
        tr.close()
        await p.done
        await asyncio.wait_for(closed, 5)

    run(loop, main())


def test_serve_forever_and_context_manager(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                          start_serving=False)
        async with server:
            task = loop.create_task(server.serve_forever())
            await asyncio.sleep(0)
            assert server.is_serving()
            with pytest.raises(RuntimeError, match="already being awaited"):
                await server.serve_forever()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not server.is_serving()
        with pytest.raises(RuntimeError, match="is closed"):
            await server.serve_forever()

    run(loop, main())


def test_multiple_hosts_reuse_port_and_sock(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        hosts = ["127.0.0.1"]
        if socket.has_ipv6:
            try:
                socket.socket(socket.AF_INET6).close()
                hosts.append("::1")
            except OSError:
                pass
        server = await loop.create_server(lambda: Proto(loop, echo=True), hosts, 0,
                                          reuse_port=True)
        families = sorted(s.family for s in server.sockets)
        assert len(families) == len(hosts)
        port = server.sockets[0].getsockname()[1]
        for s in server.sockets:
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            host, p = s.getsockname()[:2]
            got = await roundtrip(loop, lambda: loop.create_connection(
                lambda: Proto(loop), host, p), b"x")
            assert got == b"x"
        server.close()
        await server.wait_closed()
        lsock = socket.create_server(("127.0.0.1", 0))
        server = await loop.create_server(lambda: Proto(loop, echo=True), sock=lsock)
        port = lsock.getsockname()[1]
        got = await roundtrip(loop, lambda: loop.create_connection(
            lambda: Proto(loop), "127.0.0.1", port), b"sock")
        assert got == b"sock"
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_create_server_bad_arguments(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
            await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=True)
        with pytest.raises(ValueError, match="Neither host/port nor sock"):
            await loop.create_server(asyncio.Protocol)
        s = socket.socket()
        try:
            with pytest.raises(ValueError, match="host/port and sock"):
                await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, sock=s)
        finally:
            s.close()
        busy = socket.create_server(("127.0.0.1", 0))
        try:
            with pytest.raises(OSError, match="error while attempting to bind"):
                await loop.create_server(asyncio.Protocol, "127.0.0.1",
                                         busy.getsockname()[1], reuse_address=False)
        finally:
            busy.close()

    run(loop, main())


def test_close_and_abort_clients(loop: asyncio.AbstractEventLoop) -> None:
    if not hasattr(asyncio.base_events.Server, "close_clients") and \
            not hasattr(loop, "aio_context"):
        pytest.skip("Server.close_clients() is new in 3.13")

    async def main() -> None:
        served: list[Proto] = []
        server = await loop.create_server(lambda: served.append(Proto(loop)) or served[-1],
                                          "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = [await loop.create_connection(lambda: Proto(loop), "127.0.0.1", port)
                   for _ in range(3)]
        while len(served) < 3:
            await asyncio.sleep(0.001)
        server.close_clients()
        for _, p in clients:
            await p.done
        server.abort_clients()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_accept_error_out_of_fds(qloop_loop: asyncio.AbstractEventLoop) -> None:
    # an accept() failing for lack of resources is reported and accepting pauses
    import errno

    loop = qloop_loop
    rec = Recorder()
    loop.set_exception_handler(rec)

    class FailingSock:
        def __init__(self, real: socket.socket) -> None:
            self.real = real

        def accept(self) -> Any:
            raise OSError(errno.EMFILE, "Too many open files")

        def fileno(self) -> int:
            return self.real.fileno()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.setblocking(False)
    try:
        loop._accept_connection(asyncio.Protocol, FailingSock(lsock), None,  # type: ignore
                                None, 10, None, None)
        assert rec.contexts[0]["message"] == "socket.accept() out of system resource"
    finally:
        lsock.close()


# --------------------------------------------------------------------------------------------
# Unix sockets, accepted sockets


def test_unix_server_and_connection(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "sock")
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY))  # a plain file: bind fails
            with pytest.raises(OSError):
                await loop.create_unix_server(asyncio.Protocol, path)
            os.unlink(path)
            server = await loop.create_unix_server(lambda: Proto(loop, echo=True), path)
            assert server.sockets[0].family == socket.AF_UNIX
            got = await roundtrip(loop, lambda: loop.create_unix_connection(
                lambda: Proto(loop), path), b"unix")
            assert got == b"unix"
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            got = await roundtrip(loop, lambda: loop.create_unix_connection(
                lambda: Proto(loop), sock=s), b"sock")
            assert got == b"sock"
            server.close()
            await server.wait_closed()
            if sys.version_info >= (3, 13):
                assert not os.path.exists(path)  # cleanup_socket, asyncio's from 3.13
            else:
                os.unlink(path)
            # a stale socket file is replaced
            stale = socket.socket(socket.AF_UNIX)
            stale.bind(path)
            stale.close()
            server = await loop.create_unix_server(asyncio.Protocol, path)
            server.close()
            await server.wait_closed()
            with pytest.raises(ValueError, match="path and sock"):
                await loop.create_unix_connection(asyncio.Protocol, path, sock=s)
            with pytest.raises(ValueError, match="no path and sock were specified"):
                await loop.create_unix_connection(asyncio.Protocol)
            t = socket.socket()
            try:
                with pytest.raises(ValueError, match="A UNIX Domain Stream Socket"):
                    await loop.create_unix_connection(asyncio.Protocol, sock=t)
                with pytest.raises(ValueError, match="A UNIX Domain Stream Socket"):
                    await loop.create_unix_server(asyncio.Protocol, sock=t)
            finally:
                t.close()

    run(loop, main())


def test_abstract_unix_socket(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        name = f"\0qloop-test-{os.getpid()}-{id(loop)}"
        server = await loop.create_unix_server(lambda: Proto(loop, echo=True), name)
        got = await roundtrip(loop, lambda: loop.create_unix_connection(
            lambda: Proto(loop), name), b"abstract")
        assert got == b"abstract"
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_connect_accepted_socket(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        lsock = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(lsock.getsockname())
        conn, _ = lsock.accept()
        lsock.close()
        _tr, p = await loop.connect_accepted_socket(lambda: Proto(loop, echo=True), conn)
        client.sendall(b"accepted")
        data = b""
        while len(data) < 8:
            data += await loop.sock_recv(client, 100) if client.gettimeout() == 0 else \
                await loop.run_in_executor(None, client.recv, 100)
        assert data == b"accepted"
        client.close()
        await p.done
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.connect_accepted_socket(asyncio.Protocol, u)
        finally:
            u.close()

    run(loop, main())


# --------------------------------------------------------------------------------------------
# TLS over the transports (asyncio's sslproto)


def _certs() -> Any:
    import test

    base = os.path.join(os.path.dirname(test.__file__), "certdata")
    if not os.path.exists(base):
        base = os.path.dirname(test.__file__)
    cert = os.path.join(base, "keycert3.pem")
    ca = os.path.join(base, "pycacert.pem")
    if not (os.path.exists(cert) and os.path.exists(ca)):
        pytest.skip("CPython's test certificates are not installed")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(ca)
    return server_ctx, client_ctx


def test_tls_connection_and_start_tls(loop: asyncio.AbstractEventLoop) -> None:
    server_ctx, client_ctx = _certs()

    async def main() -> None:
        server = await loop.create_server(lambda: Proto(loop, echo=True), "127.0.0.1", 0,
                                          ssl=server_ctx, ssl_handshake_timeout=10)
        port = server.sockets[0].getsockname()[1]
        tr, p = await loop.create_connection(lambda: Proto(loop), "127.0.0.1", port,
                                             ssl=client_ctx, server_hostname="localhost")
        assert tr.get_extra_info("sslcontext") is client_ctx
        assert tr.get_extra_info("peercert")
        tr.write(b"secret")
        assert await wait_for_data(p, 6) == b"secret"
        tr.close()
        await p.done
        server.close()
        await server.wait_closed()

        # start_tls on a plain connection (asyncio streams)
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"OK\n")
            await writer.drain()
            await writer.start_tls(server_ctx)
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"OK\n"
        await writer.start_tls(client_ctx, server_hostname="localhost")
        writer.write(b"over tls\n")
        assert await reader.readline() == b"OVER TLS\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_start_tls_takes_the_streams_buffered_handshake(
        loop: asyncio.AbstractEventLoop) -> None:
    # the client's hello already read into the server's StreamReader when the server calls
    # start_tls(): the handshake goes on with it (asyncio's loop does so from Python 3.13)
    import inspect

    if isinstance(loop, asyncio.BaseEventLoop) and "_stream_reader" not in inspect.getsource(
            asyncio.BaseEventLoop.start_tls):
        pytest.skip("this Python's asyncio loop drops the buffered bytes (and hangs)")
    server_ctx, client_ctx = _certs()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        if not reader._buffer:  # type: ignore[attr-defined]
            await reader._wait_for_data("test")  # type: ignore[attr-defined]
        await writer.start_tls(server_ctx)
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")  # no answer awaited: the hello follows at once
        await writer.start_tls(client_ctx, server_hostname="localhost")
        writer.write(b"over tls\n")
        assert await reader.readline() == b"OVER TLS\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_tls_handshake_failure(loop: asyncio.AbstractEventLoop) -> None:
    server_ctx, _ = _certs()
    strict = ssl.create_default_context()  # does not trust the test CA
    loop.set_exception_handler(lambda lp, c: None)

    async def main() -> None:
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ssl.SSLError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=strict,
                                         server_hostname="localhost")
        server.close()
        await server.wait_closed()

    run(loop, main())


# --------------------------------------------------------------------------------------------
# asyncio streams


def test_streams_echo(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        for i in range(100):
            writer.write(b"line %d\n" % i)
        await writer.drain()
        for i in range(100):
            assert await reader.readline() == b"line %d\n" % i
        big = b"z" * (512 * 1024) + b"\n"
        writer.write(big)
        await writer.drain()
        assert await reader.readline() == big
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main(), timeout=30)


def test_unix_streams(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.readexactly(5))[::-1])
            await writer.drain()
            writer.close()

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s")
            server = await asyncio.start_unix_server(handle, path)
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"hello")
            assert await reader.read() == b"olleh"
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

    run(loop, main())


def test_server_inside_main_loop_stopped_by_shutdown(main_loop: ModuleType, guard: Any) -> None:
    mod = main_loop
    loop = mod.new_event_loop(ctx=mod.get_aio_context())
    log: list[Any] = []

    async def job() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        log.append(await reader.readline())
        writer.close()
        await writer.wait_closed()
        log.append(mod.bql_locked())
        # the server keeps serving until the QEMU-style shutdown request ends main_loop()
        loop.call_later(0.01, mod.system_shutdown_request, mod.ShutdownCause.HOST_QMP_QUIT)
        log.append(server)

    task = loop.create_task(job())
    task.add_done_callback(lambda t: t.exception() and mod.system_shutdown_request(
        mod.ShutdownCause.HOST_ERROR))
    assert mod.main_loop() == 0
    task.result()
    server = log[2]
    assert log[:2] == [b"HELLO\n", True]
    assert server.is_serving()
    server.close()
    loop.run_until_complete(server.wait_closed())  # the loop can run on the main context too
    loop.close()


def test_cancelled_serve_forever_closes_the_clients_from_3_13(
        loop: asyncio.AbstractEventLoop) -> None:
    # as asyncio's: from Python 3.13 cancelling serve_forever() closes the connections too
    async def main() -> bool:
        made = asyncio.Event()
        lost = loop.create_future()

        class Idle(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                made.set()

            def connection_lost(self, exc: Exception | None) -> None:
                lost.set_result(exc)

        server = await loop.create_server(Idle, "127.0.0.1", 0)
        serving = asyncio.ensure_future(server.serve_forever())
        sock = socket.create_connection(server.sockets[0].getsockname()[:2])
        try:
            await made.wait()
            serving.cancel()
            if sys.version_info < (3, 13):
                await asyncio.sleep(0)
                assert not lost.done()  # the server waits for its client to go
                sock.close()
            await lost
            with pytest.raises(asyncio.CancelledError):
                await serving
            return server.is_serving()
        finally:
            sock.close()

    assert run(loop, main()) is False
