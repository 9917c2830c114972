"""The asyncio event loop: executors, name resolution, async generators, and what is not
implemented yet."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading

import pytest

from _aio_support import Recorder, run


def test_run_in_executor(loop: asyncio.AbstractEventLoop) -> None:
    main_thread = threading.get_ident()

    def work(a: int, b: int) -> tuple:
        return a + b, threading.get_ident() != main_thread

    async def main() -> list:
        return await asyncio.gather(*(loop.run_in_executor(None, work, i, 1) for i in range(20)))

    results = run(loop, main())
    assert results == [(i + 1, True) for i in range(20)]


def test_run_in_executor_exception(loop: asyncio.AbstractEventLoop) -> None:
    def work() -> None:
        raise ValueError("in thread")

    with pytest.raises(ValueError, match="in thread"):
        run(loop, loop.run_in_executor(None, work))


@pytest.mark.parametrize(("raised", "awaited"), [
    (concurrent.futures.CancelledError, asyncio.CancelledError),
    (concurrent.futures.InvalidStateError, asyncio.InvalidStateError),
])
def test_run_in_executor_converts_concurrent_exceptions(loop: asyncio.AbstractEventLoop,
                                                        raised: type, awaited: type) -> None:
    """A job that raises concurrent.futures' CancelledError (a future it waited on was
    cancelled) or InvalidStateError reaches the awaiting coroutine as asyncio's own, as
    asyncio's wrap_future converts them."""
    def job() -> None:
        raise raised("from the job")

    async def main() -> BaseException:
        try:
            await loop.run_in_executor(None, job)
        except BaseException as exc:  # noqa: BLE001 - what arrived is the point
            return exc
        raise AssertionError("not reached")

    got = run(loop, main())
    assert type(got) is awaited


def test_custom_and_default_executor(loop: asyncio.AbstractEventLoop) -> None:
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mine") as ex:
        name = run(loop, loop.run_in_executor(ex, lambda: threading.current_thread().name))
        assert name.startswith("mine")
    ex2 = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dflt")
    loop.set_default_executor(ex2)
    name = run(loop, loop.run_in_executor(None, lambda: threading.current_thread().name))
    assert name.startswith("dflt")
    with pytest.raises(TypeError, match="executor must be ThreadPoolExecutor"):
        loop.set_default_executor(object())  # type: ignore[arg-type]
    run(loop, loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, print)


def test_shutdown_default_executor_waits(loop: asyncio.AbstractEventLoop) -> None:
    done = []

    def slow() -> None:
        import time

        time.sleep(0.05)
        done.append(1)

    async def main() -> None:
        loop.run_in_executor(None, slow)
        await loop.shutdown_default_executor()

    run(loop, main())
    assert done == [1]


def test_getaddrinfo_and_getnameinfo(loop: asyncio.AbstractEventLoop) -> None:
    infos = run(loop, loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM))
    assert infos and infos[0][4] == ("127.0.0.1", 80)
    host, port = run(loop, loop.getnameinfo(("127.0.0.1", 80),
                                            socket.NI_NUMERICHOST | socket.NI_NUMERICSERV))
    assert (host, port) == ("127.0.0.1", "80")
    with pytest.raises(socket.gaierror):
        run(loop, loop.getaddrinfo("host.invalid", 80))


def test_shutdown_asyncgens(loop: asyncio.AbstractEventLoop) -> None:
    closed = []

    async def agen():  # type: ignore[no-untyped-def]
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def main() -> object:
        g = agen()
        assert await g.__anext__() == 1
        return g

    g = run(loop, main())
    assert closed == []
    run(loop, loop.shutdown_asyncgens())
    assert closed == [True]
    del g


def test_asyncgen_finalized_by_the_loop(loop: asyncio.AbstractEventLoop) -> None:
    import gc

    closed = []

    async def agen():  # type: ignore[no-untyped-def]
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            closed.append(True)

    async def main() -> None:
        g = agen()
        await g.__anext__()
        del g
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)

    run(loop, main())
    assert closed == [True]


def test_asyncgen_error_on_close_is_reported(loop: asyncio.AbstractEventLoop) -> None:
    rec = Recorder()
    loop.set_exception_handler(rec)

    async def agen():  # type: ignore[no-untyped-def]
        try:
            yield 1
        finally:
            raise ValueError("cleanup failed")

    async def main() -> object:
        g = agen()
        await g.__anext__()
        return g

    g = run(loop, main())
    run(loop, loop.shutdown_asyncgens())
    assert any("an error occurred during closing of asynchronous generator" in c["message"]
               for c in rec.contexts)
    del g

