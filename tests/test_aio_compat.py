"""The asyncio event loop behaves as asyncio's own loop where independent asyncio test suites
look: the context protocol callbacks run in, sockets closed under pending I/O, weak references
to handles, the debug-mode slow-callback log, pipe transports' methods, the exceptions kept by
a failed create_connection, ``loop._closed``, the unix server's socket file.  Every test runs on
qloop's two implementations and on asyncio's loop, the reference."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import weakref
from typing import Any

import pytest

from _aio_support import collect, run

CV: contextvars.ContextVar[str] = contextvars.ContextVar("CV", default="outer")


# --------------------------------------------------------------------------------------------
# The context of protocol callbacks: the one current when the transport was set up


class CtxProto(asyncio.Protocol, asyncio.DatagramProtocol, asyncio.SubprocessProtocol):
    """Records, per callback name, the values of CV it saw; echoes with ``echo``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, echo: bool = False,
                 hold: bool = False) -> None:
        self.loop = loop
        self.echo = echo
        self.hold = hold
        self.seen: dict[str, set[str]] = {}
        self.transport: Any = None
        self.data = bytearray()
        self.datagrams: list[bytes] = []
        self.errors: list[BaseException] = []
        self.done = loop.create_future()
        self.got = asyncio.Event()

    def _rec(self, name: str) -> None:
        self.seen.setdefault(name, set()).add(CV.get())

    def connection_made(self, transport: Any) -> None:
        self._rec("connection_made")
        self.transport = transport
        if self.hold:
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self._rec("data_received")
        self.data += data
        self.got.set()
        if self.echo:
            self.transport.write(data)

    def eof_received(self) -> None:
        self._rec("eof_received")

    def pause_writing(self) -> None:
        self._rec("pause_writing")

    def resume_writing(self) -> None:
        self._rec("resume_writing")

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._rec("datagram_received")
        self.datagrams.append(data)
        self.got.set()
        if self.echo:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._rec("error_received")
        self.errors.append(exc)
        self.got.set()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._rec("pipe_data_received")
        self.data += data

    def pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        self._rec("pipe_connection_lost")

    def process_exited(self) -> None:
        self._rec("process_exited")

    def connection_lost(self, exc: BaseException | None) -> None:
        self._rec("connection_lost")
        if not self.done.done():
            self.done.set_result(exc)


def context_with(value: str) -> contextvars.Context:
    ctx = contextvars.copy_context()
    ctx.run(CV.set, value)
    return ctx


async def in_context(value: str | contextvars.Context, coro: Any) -> Any:
    """Await ``coro`` as a task started in a copy of the context where CV is ``value``."""
    ctx = context_with(value) if isinstance(value, str) else value
    return await ctx.run(asyncio.ensure_future, coro)


def assert_seen(proto: CtxProto, value: str, *names: str) -> None:
    for name in names:
        assert name in proto.seen, (name, proto.seen)
    for name, values in proto.seen.items():
        assert values == {value}, (name, proto.seen)


async def _stream_round(loop: asyncio.AbstractEventLoop, connect: Any, serve: Any,
                        tls: bool = False) -> tuple[CtxProto, CtxProto]:
    sprotos: list[CtxProto] = []

    def factory() -> CtxProto:
        p = CtxProto(loop, echo=True, hold=True)
        sprotos.append(p)
        return p

    server_ctx = context_with("server")
    server = await in_context(server_ctx, serve(factory))
    size = 8 << 20

    async def client() -> CtxProto:
        tr, p = await connect(lambda: CtxProto(loop))
        tr.set_write_buffer_limits(high=1)
        while not sprotos or sprotos[0].transport is None:
            await asyncio.sleep(0)
        tr.write(b"x" * size)
        assert tls or "pause_writing" in p.seen
        # the server reads from now on (resume_reading in the server's context, as asyncio
        # registers its reader in the context current at the call)
        server_ctx.run(sprotos[0].transport.resume_reading)
        while len(p.data) < size:
            p.got.clear()
            await p.got.wait()
        if tls:
            tr.close()
        else:
            tr.write_eof()
        return p

    p = await in_context("inner", client())
    await p.done
    await sprotos[0].done
    server.close()
    await server.wait_closed()
    return p, sprotos[0]


def test_context_of_tcp_protocol_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        port: list[int] = []

        async def serve(factory: Any) -> Any:
            s = await loop.create_server(factory, "127.0.0.1", 0)
            port.append(s.sockets[0].getsockname()[1])
            return s

        def connect(factory: Any) -> Any:
            return loop.create_connection(factory, "127.0.0.1", port[0])

        p, sp = await _stream_round(loop, connect, serve)
        assert_seen(p, "inner", "connection_made", "data_received", "eof_received",
                    "pause_writing", "resume_writing", "connection_lost")
        assert_seen(sp, "server", "connection_made", "data_received", "eof_received",
                    "connection_lost")

    run(loop, main())


class CtxBufferedProto(asyncio.BufferedProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.seen: dict[str, set[str]] = {}
        self.buf = bytearray(16)
        self.got = 0
        self.done = loop.create_future()

    def _rec(self, name: str) -> None:
        self.seen.setdefault(name, set()).add(CV.get())

    def get_buffer(self, sizehint: int) -> bytearray:
        self._rec("get_buffer")
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self._rec("buffer_updated")
        self.got += nbytes

    def eof_received(self) -> None:
        self._rec("eof_received")

    def connection_lost(self, exc: BaseException | None) -> None:
        self._rec("connection_lost")
        self.done.set_result(None)


def test_context_of_buffered_protocol_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        a, b = socket.socketpair()

        async def reader() -> CtxBufferedProto:
            _, p = await loop.connect_accepted_socket(lambda: CtxBufferedProto(loop), a)
            b.sendall(b"x" * 100)
            b.shutdown(socket.SHUT_WR)
            await p.done
            return p

        p = await in_context("inner", reader())
        b.close()
        assert p.got == 100
        assert set(p.seen) == {"get_buffer", "buffer_updated", "eof_received",
                               "connection_lost"}
        assert all(v == {"inner"} for v in p.seen.values()), p.seen

    run(loop, main())


def test_context_of_unix_protocol_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s")

            def serve(factory: Any) -> Any:
                return loop.create_unix_server(factory, path)

            def connect(factory: Any) -> Any:
                return loop.create_unix_connection(factory, path)

            p, sp = await _stream_round(loop, connect, serve)
        assert_seen(p, "inner", "connection_made", "data_received", "eof_received",
                    "pause_writing", "resume_writing", "connection_lost")
        assert_seen(sp, "server", "connection_made", "data_received", "eof_received",
                    "connection_lost")

    run(loop, main())


def test_context_of_tls_protocol_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    from test_aio_server import _certs

    server_ctx, client_ctx = _certs()

    async def main() -> None:
        port: list[int] = []

        async def serve(factory: Any) -> Any:
            s = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
            port.append(s.sockets[0].getsockname()[1])
            return s

        def connect(factory: Any) -> Any:
            return loop.create_connection(factory, "127.0.0.1", port[0], ssl=client_ctx,
                                          server_hostname="localhost")

        p, sp = await _stream_round(loop, connect, serve, tls=True)
        assert_seen(p, "inner", "connection_made", "data_received", "connection_lost")
        assert_seen(sp, "server", "connection_made", "data_received", "connection_lost")

    run(loop, main())


def test_context_of_udp_protocol_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        server_ctx = context_with("server")
        str_, sp = await in_context(server_ctx, loop.create_datagram_endpoint(
            lambda: CtxProto(loop, echo=True), local_addr=("127.0.0.1", 0)))
        addr = str_.get_extra_info("sockname")
        gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        gone.bind(("127.0.0.1", 0))
        nobody = gone.getsockname()
        gone.close()

        async def client() -> CtxProto:
            tr, p = await loop.create_datagram_endpoint(lambda: CtxProto(loop),
                                                        remote_addr=addr)
            tr.sendto(b"ping")
            while not p.datagrams:
                p.got.clear()
                await p.got.wait()
            tr.close()
            # a connected socket learns that nobody listens: error_received
            tr2, _ = await loop.create_datagram_endpoint(lambda: p, remote_addr=nobody)
            tr2.sendto(b"lost")
            while not p.errors:
                p.got.clear()
                await p.got.wait()
            tr2.close()
            return p

        p = await in_context("inner", client())
        await p.done
        server_ctx.run(str_.close)  # close() schedules connection_lost in its caller's context
        await sp.done
        assert_seen(p, "inner", "connection_made", "datagram_received", "error_received",
                    "connection_lost")
        assert_seen(sp, "server", "connection_made", "datagram_received", "connection_lost")

    run(loop, main())


def test_context_of_pipe_protocol_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        r, w = os.pipe()
        rfile, wfile = os.fdopen(r, "rb", 0), os.fdopen(w, "wb", 0)

        async def reader() -> CtxProto:
            _, p = await loop.connect_read_pipe(lambda: CtxProto(loop), rfile)
            os.write(w, b"hello")
            while not p.data:
                p.got.clear()
                await p.got.wait()
            wfile.close()
            await p.done
            return p

        p = await in_context("inner", reader())
        assert_seen(p, "inner", "connection_made", "data_received", "eof_received",
                    "connection_lost")

        a, b = socket.socketpair()

        async def writer() -> CtxProto:
            tr, p = await loop.connect_write_pipe(lambda: CtxProto(loop), a)
            tr.set_write_buffer_limits(high=1)
            tr.write(b"y" * (1 << 20))
            got = 0
            while got < 1 << 20:
                got += len(await loop.sock_recv(b, 1 << 16))
            tr.close()
            await p.done
            return p

        b.setblocking(False)
        p = await in_context("inner", writer())
        b.close()
        assert_seen(p, "inner", "connection_made", "pause_writing", "resume_writing",
                    "connection_lost")

    run(loop, main())


def test_context_of_subprocess_protocol_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> CtxProto:
        async def child() -> CtxProto:
            tr, p = await loop.subprocess_exec(lambda: CtxProto(loop), sys.executable, "-c",
                                               "print('out')", stdin=subprocess.DEVNULL)
            await p.done
            tr.close()
            return p

        return await in_context("inner", child())

    asyncio.set_event_loop(loop)  # asyncio's child watcher on Python < 3.12
    try:
        p = run(loop, main())
    finally:
        asyncio.set_event_loop(None)
    assert bytes(p.data).strip() == b"out"
    names = ("connection_made", "pipe_data_received", "pipe_connection_lost")
    if sys.version_info < (3, 12):
        # asyncio's own loop reports the exit from its child watcher's thread (in that
        # thread's context); qloop reports it in the context the transport was set up in
        p.seen.pop("process_exited", None)
        p.seen.pop("connection_lost", None)
    else:
        names += ("process_exited", "connection_lost")
    assert_seen(p, "inner", *names)


# --------------------------------------------------------------------------------------------
# Handles take weak references; loop._closed; the debug-mode slow-callback log


def test_handles_are_weakly_referenceable(loop: asyncio.AbstractEventLoop) -> None:
    h1 = loop.call_soon(lambda: None)
    h2 = loop.call_later(10, lambda: None)
    refs = [weakref.ref(h1), weakref.ref(h2)]
    assert [r() for r in refs] == [h1, h2]
    h2.cancel()
    del h1
    loop.run_until_complete(asyncio.sleep(0))
    collect()
    assert refs[0]() is None
    # handles made after those died (from the freelist, on the core) start with no referent
    h3 = loop.call_soon(lambda: None)
    r3 = weakref.ref(h3)
    assert r3() is h3
    loop.run_until_complete(asyncio.sleep(0))


def test_loop_closed_attribute(loop: asyncio.AbstractEventLoop) -> None:
    assert loop._closed is False  # type: ignore[attr-defined]
    loop.close()
    assert loop._closed is True  # type: ignore[attr-defined]


def test_slow_callback_names_the_task(loop: asyncio.AbstractEventLoop,
                                      caplog: pytest.LogCaptureFixture) -> None:
    loop.set_debug(True)
    loop.slow_callback_duration = 0.0

    async def work() -> None:
        pass

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        task = loop.create_task(work(), name="slowpoke")
        loop.run_until_complete(task)
    lines = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert any(line.startswith("Executing <Task finished name='slowpoke'") for line in lines), \
        lines


# --------------------------------------------------------------------------------------------
# Pipe transports answer what asyncio's answer

_PIPE_METHODS = ("is_reading", "pause_reading", "resume_reading", "is_closing",
                 "get_write_buffer_size", "get_write_buffer_limits", "can_write_eof")


def _probe(transport: Any) -> dict[str, str]:
    out = {}
    for name in _PIPE_METHODS:
        try:
            getattr(transport, name)()
        except NotImplementedError:
            out[name] = "NotImplementedError"
        except AttributeError:
            out[name] = "AttributeError"
        else:
            out[name] = "ok"
    return out


def _probe_subprocess_pipes(loop: asyncio.AbstractEventLoop) -> tuple[dict, dict]:
    async def main() -> tuple[dict, dict]:
        tr, _ = await loop.subprocess_exec(asyncio.SubprocessProtocol, "cat",
                                           stderr=subprocess.DEVNULL)
        try:
            return _probe(tr.get_pipe_transport(0)), _probe(tr.get_pipe_transport(1))
        finally:
            tr.close()
            await tr._wait()  # type: ignore[attr-defined]

    asyncio.set_event_loop(loop)  # asyncio's child watcher on Python < 3.12
    try:
        return run(loop, main())
    finally:
        asyncio.set_event_loop(None)


def test_subprocess_pipe_transport_methods(loop: asyncio.AbstractEventLoop) -> None:
    reference = asyncio.new_event_loop()
    try:
        want_w, want_r = _probe_subprocess_pipes(reference)
    finally:
        reference.close()
    got_w, got_r = _probe_subprocess_pipes(loop)
    assert got_w == want_w
    # where asyncio's read pipe has no method qloop's may answer (its write-side ones)
    assert {k: v for k, v in got_r.items() if want_r[k] != "AttributeError"} == \
        {k: v for k, v in want_r.items() if v != "AttributeError"}


# --------------------------------------------------------------------------------------------
# Sockets closed under pending I/O: asyncio's loop says nothing (the loop fixture fails a test
# whose loop called its exception handler)


def _pair(family: int) -> tuple[socket.socket, socket.socket]:
    if family == socket.AF_UNIX:
        return socket.socketpair()
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        a = socket.create_connection(lsock.getsockname())
        b, _ = lsock.accept()
    return a, b


async def _spin(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET])
def test_socket_closed_during_sock_recv(loop: asyncio.AbstractEventLoop, family: int) -> None:
    async def main() -> None:
        a, b = _pair(family)
        a.setblocking(False)
        b.setblocking(False)
        fut = asyncio.ensure_future(loop.sock_recv(a, 10))
        await _spin()
        a.close()
        await _spin()
        assert not fut.done()  # asyncio's loop never hears of the closed fd
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        await _spin()
        b.close()

    run(loop, main())


@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET])
@pytest.mark.parametrize("pending", [1, 3])
def test_sock_recv_cancelled_after_the_data_came(loop: asyncio.AbstractEventLoop, family: int,
                                                 pending: int) -> None:
    # pending sock_recv calls, the peer sends, then they are cancelled: the next sock_recv
    # gets the data and the loop reports nothing
    async def main() -> None:
        a, b = _pair(family)
        a.setblocking(False)
        b.setblocking(False)
        futs = [asyncio.ensure_future(loop.sock_recv(a, 1)) for _ in range(pending)]
        await _spin()
        await loop.sock_sendall(b, b"1")
        for fut in futs:
            fut.cancel()
        assert await loop.sock_recv(a, 1) == b"1"
        results = await asyncio.gather(*futs, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        await _spin()
        a.close()
        b.close()

    run(loop, main())


def test_socket_closed_during_sock_sendall(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        a.setblocking(False)
        fut = asyncio.ensure_future(loop.sock_sendall(a, b"x" * (16 << 20)))
        await _spin()
        assert not fut.done()
        a.close()
        await _spin()
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        await _spin()
        b.close()

    run(loop, main())


def test_socket_closed_after_cancelled_sock_recv(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        a.setblocking(False)
        fut = asyncio.ensure_future(loop.sock_recv(a, 10))
        await _spin()
        fut.cancel()
        a.close()
        with pytest.raises(asyncio.CancelledError):
            await fut
        await _spin()
        b.close()

    run(loop, main())


def test_socket_closed_under_a_reader(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        loop.add_reader(a.fileno(), lambda: None)
        await _spin()
        fd = a.fileno()
        a.close()
        await _spin()
        loop.remove_reader(fd)
        b.close()

    run(loop, main())


def test_datagram_socket_closed_under_its_transport(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        tr, p = await loop.create_datagram_endpoint(lambda: CtxProto(loop), sock=a)
        b.send(b"one")
        while not p.datagrams:
            p.got.clear()
            await p.got.wait()
        a.close()
        await _spin()
        tr.close()
        await p.done
        b.close()

    run(loop, main())


# --------------------------------------------------------------------------------------------
# create_connection: the exceptions of a failed attempt hold no reference cycle


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("delay", [None, 0.01], ids=["in-turn", "happy-eyeballs"])
def test_failed_create_connection_leaves_no_cycles(loop: asyncio.AbstractEventLoop,
                                                   delay: float | None) -> None:
    if delay is not None and sys.version_info < (3, 12) and not hasattr(loop, "aio_context"):
        pytest.skip("asyncio's loop of Python 3.11 keeps the race's exceptions in a cycle "
                    "(asyncio.staggered's list of them)")
    ports = [_closed_port(), _closed_port()]

    async def fake_getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 ("127.0.0.1", p)) for p in ports]

    async def main() -> None:
        loop.getaddrinfo = fake_getaddrinfo  # type: ignore[method-assign]
        try:
            await loop.create_connection(asyncio.Protocol, "two.invalid", 80,
                                         happy_eyeballs_delay=delay)
        except OSError:
            pass
        else:
            raise AssertionError("create_connection succeeded")

    collect()
    gc.disable()
    try:
        run(loop, main())
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        leaked = [o for o in gc.garbage if isinstance(o, OSError)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert leaked == []


# --------------------------------------------------------------------------------------------
# A closed unix server's socket file: removed from Python 3.13, kept before (asyncio's choice)


def test_unix_server_socket_file_after_close(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> bool:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s")
            server = await loop.create_unix_server(asyncio.Protocol, path)
            assert os.path.exists(path)
            server.close()
            await server.wait_closed()
            return os.path.exists(path)

    assert run(loop, main()) is (sys.version_info < (3, 13))


# --------------------------------------------------------------------------------------------
# The order of callbacks: a timer runs after the handles queued before the iteration it became
# due in ended, as in asyncio, whose loop moves due timers to the end of its ready queue once
# per iteration.  Made deterministic by spinning (not sleeping) until each timer is due before
# anything else happens; the reference is a fresh asyncio loop running the same program.


def _spin_past(loop: asyncio.AbstractEventLoop, when: float) -> None:
    while loop.time() <= when:
        pass


# A program: a list of (action, child program); running a node appends its label, then does its
# actions in order.  "soon": call_soon(child); "later0": call_later(0, child); "tiny":
# call_later(1 us, child); "past": call_at(a past time, child); "cancelled": a tiny timer,
# cancelled at once (its child must never run).  Each timer is due (spun past) before the next
# action, so no two deadlines are equal and every due timer is due by the iteration's end.
Program = list[tuple[str, Any]]
ACTIONS = ("soon", "soon", "later0", "tiny", "tiny", "past", "cancelled")


def _random_program(rng: random.Random, budget: list[int], depth: int = 0) -> Program:
    program: Program = []
    for _ in range(rng.randint(1 if depth == 0 else 0, 3)):
        if budget[0] <= 0 or depth > 6:
            break
        budget[0] -= 1
        program.append((rng.choice(ACTIONS), _random_program(rng, budget, depth + 1)))
    return program


def _count(program: Program) -> int:
    return sum(0 if action == "cancelled" else 1 + _count(child) for action, child in program)


def _run_program(loop: asyncio.AbstractEventLoop, program: Program) -> list[str]:
    out: list[str] = []
    total = 1 + _count(program)
    done = loop.create_future()

    def node(label: str, actions: Program) -> None:
        out.append(label)
        for i, (action, child) in enumerate(actions):
            sub = f"{label}.{i}"
            if action == "soon":
                loop.call_soon(node, sub, child)
                continue
            if action == "later0":
                h = loop.call_later(0, node, sub, child)
            elif action == "past":
                h = loop.call_at(loop.time() - 1.0, node, sub, child)
            else:
                h = loop.call_later(1e-6, node, sub, child)
                if action == "cancelled":
                    h.cancel()
            _spin_past(loop, max(h.when(), loop.time()))
        if len(out) == total and not done.done():
            done.set_result(None)

    loop.call_soon(node, "r", program)
    run(loop, done)
    return out


def _asyncio_order(program: Program) -> list[str]:
    ref = asyncio.new_event_loop()
    try:
        return _run_program(ref, program)
    finally:
        ref.close()


@pytest.mark.parametrize(("program", "expected"), [
    ([("soon", []), ("tiny", [])], ["r", "r.0", "r.1"]),
    ([("tiny", []), ("soon", [])], ["r", "r.1", "r.0"]),  # the timer made first still waits
], ids=["soon-then-timer", "timer-then-soon"])
def test_timer_made_in_a_batch_runs_after_the_handles_queued_in_it(
        loop: asyncio.AbstractEventLoop, program: Program, expected: list[str]) -> None:
    assert _asyncio_order(program) == expected
    assert _run_program(loop, program) == expected


def test_due_timer_runs_before_what_the_handles_before_it_queue(
        loop: asyncio.AbstractEventLoop) -> None:
    # call_later(0, f) then call_soon(g), g queues h: asyncio runs g, f, h (f joins g's batch)
    program: Program = [("later0", []), ("soon", [("soon", [])])]
    assert _asyncio_order(program) == ["r", "r.1", "r.0", "r.1.0"]
    assert _run_program(loop, program) == ["r", "r.1", "r.0", "r.1.0"]


@pytest.mark.parametrize("seed", range(12))
def test_callback_order_matches_asyncio(loop: asyncio.AbstractEventLoop, seed: int) -> None:
    program = _random_program(random.Random(seed), [25])
    assert _run_program(loop, program) == _asyncio_order(program)


def test_timeout_due_in_the_iteration_that_created_the_task(
        loop: asyncio.AbstractEventLoop) -> None:
    # CPython 3.13's test_wait_for_waits_for_task_cancellation, made deterministic: the task
    # starts before the timeout (due by the end of the iteration that made both) cancels it, so
    # its finally clause runs.
    seen: list[str] = []

    async def inner() -> None:
        seen.append("started")
        try:
            await asyncio.sleep(10)
        finally:
            seen.append("finally")

    async def main() -> None:
        task = asyncio.ensure_future(inner())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as cm:
                cm.reschedule(loop.time() + 1e-6)
                _spin_past(loop, cm.when() or 0.0)
                await task
        assert task.cancelled()

    run(loop, main())
    assert seen == ["started", "finally"]


# --------------------------------------------------------------------------------------------
# Virtual time: an advance asked for inside the loop is served at the next iteration, even
# while a task keeps the loop busy (qloop only: asyncio's loop has no virtual time)


def test_advance_inside_the_loop_moves_time_while_a_task_keeps_yielding(vt_loop_factory):
    from _vt_support import run as vt_run

    loop = vt_loop_factory(autojump=False)
    hits: list[tuple[str, float]] = []

    async def main() -> None:
        loop.call_later(10, lambda: hits.append(("a", loop.time())))
        loop.call_later(12, lambda: hits.append(("b", loop.time())))
        loop.call_later(20, lambda: hits.append(("late", loop.time())))
        loop.advance(15)
        for _ in range(10):
            await asyncio.sleep(0)
        assert hits == [("a", 10.0), ("b", 12.0)]  # in deadline order, each at its time
        assert loop.time() == 15.0

    vt_run(loop, main())
    assert hits == [("a", 10.0), ("b", 12.0)]


def test_advance_inside_the_loop_with_a_busy_task(vt_loop_factory):
    from _vt_support import run as vt_run

    loop = vt_loop_factory(autojump=False)
    hits: list[str] = []

    async def main() -> None:
        loop.call_later(10, hits.append, "a")
        loop.advance(15)
        for _ in range(3):
            await asyncio.sleep(0)
        assert hits == ["a"]

    vt_run(loop, main())


def test_cancelled_await_advance_withdraws_its_target(vt_loop_factory, qloop_module):
    from _vt_support import run as vt_run

    loop = vt_loop_factory(autojump=False)

    async def main() -> float:
        waiter = asyncio.ensure_future(qloop_module.advance(100))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await qloop_module.advance(1) == 1.0
        for _ in range(5):
            await asyncio.sleep(0)
        return loop.time()

    assert vt_run(loop, main()) == 1.0
    assert loop.advance(0) == 1.0  # the withdrawn target is not reached later either
