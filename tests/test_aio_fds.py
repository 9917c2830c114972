"""The asyncio event loop: add_reader/remove_reader, add_writer/remove_writer."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator

import pytest

from _aio_support import ALL_IMPLS, LoopImpl, run, run_once, usable_impl


@pytest.fixture(params=(*ALL_IMPLS, pytest.param(
        LoopImpl("qloop-core", fdmon="io_uring"), marks=pytest.mark.c_extension,
        id="qloop-core-io_uring")))
def loop_impl(request: pytest.FixtureRequest) -> LoopImpl:
    """Every loop of the suite, plus the core's loop on an io_uring AioContext."""
    return usable_impl(request)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_reader_fires_when_readable(loop: asyncio.AbstractEventLoop,
                                    pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    got = []

    def on_readable(sock: socket.socket) -> None:
        got.append(sock.recv(100))
        if b"".join(got) == b"hello world":
            loop.stop()

    loop.add_reader(a, on_readable, a)
    loop.call_soon(b.send, b"hello ")
    loop.call_later(0.01, b.send, b"world")
    guard = loop.call_later(10, loop.stop)
    loop.run_forever()
    guard.cancel()
    assert b"".join(got) == b"hello world"
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False


def test_reader_level_triggered(loop: asyncio.AbstractEventLoop,
                                pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    calls = []
    loop.add_reader(a.fileno(), lambda: calls.append(1))
    b.send(b"x")
    for _ in range(3):
        run_once(loop)
    assert len(calls) == 3  # not drained: readable on every iteration
    loop.remove_reader(a.fileno())
    run_once(loop)
    assert len(calls) == 3


def test_writer(loop: asyncio.AbstractEventLoop,
                pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    calls = []

    def writable() -> None:
        calls.append(1)
        a.send(b"data")
        loop.remove_writer(a)

    loop.add_writer(a, writable)
    run_once(loop)
    assert calls == [1]
    assert b.recv(10) == b"data"
    assert loop.remove_writer(a) is False


def test_reader_and_writer_on_one_fd(loop: asyncio.AbstractEventLoop,
                                     pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    events = []
    loop.add_reader(a, events.append, "r")
    loop.add_writer(a, events.append, "w")
    b.send(b"x")
    run_once(loop)
    assert sorted(events) == ["r", "w"]
    loop.remove_writer(a)
    events.clear()
    run_once(loop)
    assert events == ["r"]
    loop.remove_reader(a)
    events.clear()
    run_once(loop)
    assert events == []


def test_replacing_a_reader_cancels_the_old_handle(
        loop: asyncio.AbstractEventLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    events = []
    loop.add_reader(a, events.append, "old")
    loop.add_reader(a, events.append, "new")
    b.send(b"x")
    run_once(loop)
    assert events == ["new"]
    loop.remove_reader(a)


def test_reader_removed_from_its_own_callback_and_readded(
        loop: asyncio.AbstractEventLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    events = []

    def once() -> None:
        events.append("once")
        loop.remove_reader(a)
        loop.add_reader(a, events.append, "again")

    loop.add_reader(a, once)
    b.send(b"x")
    run_once(loop)
    run_once(loop)
    assert events == ["once", "again"]
    loop.remove_reader(a)


@pytest.mark.parametrize("bad", [-1, "x", object(), 1.5])
def test_bad_fds(loop: asyncio.AbstractEventLoop, bad: object) -> None:
    with pytest.raises(ValueError):
        loop.add_reader(bad, print)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        loop.add_writer(bad, print)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        loop.remove_reader(bad)  # type: ignore[arg-type]


def test_closed_fd_is_refused(loop: asyncio.AbstractEventLoop) -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        loop.add_reader(r, print)


def test_fd_handlers_removed_on_close_of_a_borrowed_context(
        qloop_module: object, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    ctx = qloop_module.AioContext()  # type: ignore[attr-defined]
    try:
        loop = qloop_module.new_event_loop(ctx=ctx)  # type: ignore[attr-defined]
        events = []
        loop.add_reader(a, events.append, "r")
        loop.close()
        b.send(b"x")
        for _ in range(3):
            ctx.poll(False)
        assert events == []
        assert not ctx.closed
    finally:
        ctx.close()


def test_fd_closed_while_registered_is_forgotten_quietly(
        qloop_loop: asyncio.AbstractEventLoop) -> None:
    # asyncio's loop does not notice such an fd; qloop's forgets its reader and says nothing
    # (on a context of its own: the context's report stays with the context's users)
    errors = []
    qloop_loop.set_exception_handler(lambda lp, c: errors.append(c.get("exception")))
    r, w = os.pipe()
    qloop_loop.add_reader(r, print)
    os.close(r)
    os.close(w)
    run_once(qloop_loop)
    run_once(qloop_loop)
    assert errors == []
    assert qloop_loop._fd_handles(r) == (None, None)  # type: ignore[attr-defined]
    assert not qloop_loop.remove_reader(r)


def test_cancelled_reader_handle_is_removed(
        qloop_loop: asyncio.AbstractEventLoop, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    events = []
    qloop_loop.add_reader(a, events.append, "r")
    reader, writer = qloop_loop._fd_handles(a.fileno())  # type: ignore[attr-defined]
    assert writer is None
    reader.cancel()
    b.send(b"x")
    run_once(qloop_loop)
    assert events == []
    assert qloop_loop._fd_handles(a.fileno()) == (None, None)  # type: ignore[attr-defined]
    assert qloop_loop.remove_reader(a) is False


def test_readers_run_inside_a_task_context(loop: asyncio.AbstractEventLoop,
                                           pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair

    async def wait_readable() -> bytes:
        fut = loop.create_future()
        loop.add_reader(a, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            loop.remove_reader(a)
        return a.recv(10)

    loop.call_later(0.01, b.send, b"ping")
    assert run(loop, wait_readable()) == b"ping"
