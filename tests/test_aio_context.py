"""The asyncio event loop on an AioContext: ownership, asyncio code interleaved with qloop BHs,
timers and fd handlers on one context, loops driven from outside (ctx.poll(), the process main
loop) and a QEMU-style shutdown of an asyncio program running inside ``main_loop()``."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import ModuleType
from typing import Any

import pytest

from _aio_support import run


def test_owned_context(qloop_module: ModuleType, qloop_loop: asyncio.AbstractEventLoop) -> None:
    ctx = qloop_loop.aio_context  # type: ignore[attr-defined]
    assert isinstance(ctx, qloop_module.AioContext)
    assert not ctx.closed
    qloop_loop.close()
    assert ctx.closed


def test_borrowed_context_is_left_open(qloop_module: ModuleType) -> None:
    ctx = qloop_module.AioContext()
    try:
        loop = qloop_module.new_event_loop(ctx=ctx)
        assert loop.aio_context is ctx
        seen: list[Any] = []
        loop.call_soon(seen.append, "soon")
        loop.call_later(0.001, seen.append, "later")
        loop.call_later(100, seen.append, "far")
        loop.close()
        assert not ctx.closed
        time.sleep(0.005)
        for _ in range(3):
            ctx.poll(False)
        assert seen == []
        assert ctx.timers_deadline() == -1  # the loop's context timer is gone
        assert "handlers=1" in repr(ctx)  # only the context's own notifier
    finally:
        ctx.close()


def test_two_loops_on_one_context(qloop_module: ModuleType) -> None:
    ctx = qloop_module.AioContext()
    a = qloop_module.new_event_loop(ctx=ctx)
    b = qloop_module.new_event_loop(ctx=ctx)
    try:
        seen: list[Any] = []
        b.call_soon(lambda: seen.append(("b", asyncio.get_running_loop() is b,
                                          b.is_running(), a.is_running())))
        a.call_soon(lambda: seen.append(("a", asyncio.get_running_loop() is a)))
        a.call_later(0.01, a.stop)
        a.run_forever()  # a drives the context: b's callbacks run too, with b as running loop
        assert sorted(seen) == [("a", True), ("b", True, True, True)]
        assert not b.is_running()
    finally:
        a.close()
        b.close()
        ctx.close()


def test_asyncio_and_qloop_callbacks_interleave(
        qloop_module: ModuleType, qloop_loop: asyncio.AbstractEventLoop) -> None:
    loop = qloop_loop
    ctx = loop.aio_context  # type: ignore[attr-defined]
    log: list[str] = []
    a, b = socket.socketpair()
    try:
        def on_qloop_fd() -> None:
            a.recv(10)
            log.append("qloop fd")
            loop.call_soon(log.append, "asyncio after fd")

        def on_qloop_timer() -> None:
            log.append("qloop timer")
            assert asyncio.get_running_loop() is loop
            b.send(b"x")

        ctx.set_fd_handler(a, on_qloop_fd)
        timer = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, on_qloop_timer)

        def asyncio_cb() -> None:
            log.append("asyncio")
            ctx.bh_schedule_oneshot(lambda: log.append("qloop bh"))
            # The BH runs at the next iteration; a timer already due when this iteration
            # reaches its timer phase would run first.  100 ms keeps a descheduled test
            # process (a loaded CI machine) from making it due that early.
            timer.mod_ns(qloop_module.clock_get_ns(qloop_module.ClockType.REALTIME)
                         + 100_000_000)

        async def task() -> None:
            while "asyncio after fd" not in log:
                await asyncio.sleep(0.001)
            log.append("task done")

        loop.call_soon(asyncio_cb)
        run(loop, task())
        ctx.set_fd_handler(a, None)
    finally:
        a.close()
        b.close()
    assert log[:2] == ["asyncio", "qloop bh"]
    assert log.index("qloop timer") < log.index("qloop fd") < log.index("asyncio after fd")
    assert log[-1] == "task done"


def test_driven_by_ctx_poll(qloop_module: ModuleType) -> None:
    ctx = qloop_module.AioContext()
    loop = qloop_module.new_event_loop(ctx=ctx)
    try:
        seen: list[Any] = []

        def probe() -> None:
            seen.append((asyncio.get_running_loop() is loop, loop.is_running()))

        async def job() -> str:
            probe()
            await asyncio.sleep(0.005)
            probe()
            return "result"

        task = loop.create_task(job())
        loop.call_soon(probe)
        assert not loop.is_running()
        deadline = time.monotonic() + 5
        while not task.done() and time.monotonic() < deadline:
            ctx.poll(True)  # blocking: the loop's timers bound the wait
        assert task.result() == "result"
        assert seen == [(True, True)] * 3
        assert not loop.is_running()
        assert asyncio.events._get_running_loop() is None
    finally:
        loop.close()
        ctx.close()


def test_run_forever_inside_a_qloop_callback(qloop_module: ModuleType) -> None:
    # a qloop BH (not an asyncio callback) may run the loop to completion: a nested poll
    ctx = qloop_module.AioContext()
    loop = qloop_module.new_event_loop(ctx=ctx)
    try:
        results = []

        def bh() -> None:
            results.append(loop.run_until_complete(asyncio.sleep(0.001, "nested")))

        ctx.bh_schedule_oneshot(bh)
        ctx.poll(False)
        assert results == ["nested"]
    finally:
        loop.close()
        ctx.close()


def test_run_forever_while_another_thread_drives_the_context(qloop_module: ModuleType) -> None:
    ctx = qloop_module.AioContext()
    loop = qloop_module.new_event_loop(ctx=ctx)
    inside, release = threading.Event(), threading.Event()
    try:
        def blocker() -> None:  # a BH of the driver thread: its poll() is in progress
            inside.set()
            release.wait(10)

        ctx.bh_schedule_oneshot(blocker)
        t = threading.Thread(target=ctx.poll, args=(False,))
        t.start()
        assert inside.wait(5)
        with pytest.raises(RuntimeError, match="another thread"):
            loop.run_forever()
        release.set()
        t.join(5)
        assert not t.is_alive()
    finally:
        release.set()
        loop.close()
        ctx.close()


def test_loop_inside_main_loop_stopped_by_shutdown_request(
        main_loop: ModuleType, guard: Any) -> None:
    mod = main_loop
    loop = mod.new_event_loop(ctx=mod.get_aio_context())
    log: list[Any] = []
    a, b = socket.socketpair()
    a.setblocking(False)

    async def job() -> None:
        log.append(("bql", mod.bql_locked()))
        log.append(("running", asyncio.get_running_loop() is loop, loop.is_running()))
        result = await loop.run_in_executor(None, lambda: 6 * 7)
        log.append(("executor", result))
        readable = loop.create_future()
        loop.add_reader(a, lambda: readable.done() or readable.set_result(a.recv(10)))
        loop.call_later(0.005, b.send, b"ping")
        log.append(("read", await readable))
        loop.remove_reader(a)
        await asyncio.sleep(0.001)

    def shutdown(task: asyncio.Task[None]) -> None:  # also when the job fails
        mod.system_shutdown_request(mod.ShutdownCause.HOST_QMP_QUIT)

    task = loop.create_task(job())
    task.add_done_callback(shutdown)
    try:
        status = mod.main_loop()
    finally:
        a.close()
        b.close()
    assert status == 0
    assert task.done()
    task.result()
    assert log == [("bql", True), ("running", True, True), ("executor", 42),
                   ("read", b"ping")]
    assert not loop.is_running()
    loop.close()
    assert not mod.get_aio_context().closed


def test_asyncio_timers_inside_main_loop(main_loop: ModuleType, guard: Any) -> None:
    mod = main_loop
    loop = mod.new_event_loop(ctx=mod.get_aio_context())
    fired: list[float] = []
    t0 = loop.time()
    loop.call_later(0.02, lambda: fired.append(loop.time()))
    loop.call_later(0.03, mod.system_shutdown_request, mod.ShutdownCause.HOST_QMP_QUIT)
    assert mod.main_loop() == 0
    assert len(fired) == 1 and fired[0] - t0 >= 0.02
    loop.close()


def test_call_soon_threadsafe_wakes_main_loop(main_loop: ModuleType, guard: Any) -> None:
    mod = main_loop
    loop = mod.new_event_loop(ctx=mod.get_aio_context())

    def later() -> None:
        time.sleep(0.02)
        loop.call_soon_threadsafe(mod.system_shutdown_request, mod.ShutdownCause.HOST_QMP_QUIT)

    t = threading.Thread(target=later)
    t.start()
    t0 = time.monotonic()
    assert mod.main_loop() == 0
    assert time.monotonic() - t0 < 2.0  # woken at once, not by the guard's 5 s bound
    t.join()
    loop.close()
