"""A user's program that touches every public name of qloop, for ``mypy --strict``.

It is type-checked, not run (tests/test_typing.py and CI): ``assert_type`` pins the
precise types the stub promises (no ``Any`` where a user needs a real type), and
``tests/test_typing.py`` checks that every name of ``qloop.__all__`` appears here as
``qloop.<name>``.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import Any, Literal, assert_type

import qloop


async def coroutine_body(done: list[str]) -> int:
    assert_type(qloop.in_coroutine(), bool)
    me = qloop.coroutine_self()
    assert_type(me, qloop.Coroutine | None)
    await qloop.coroutine_yield()
    await qloop.co_sleep_ns(qloop.ClockType.REALTIME, 1_000)
    done.append("slept")
    return 42


async def hop(target: qloop.AioContext, pool: qloop.ThreadPool) -> None:
    await qloop.co_reschedule_self(target)
    n = await pool.co_submit(len, "abcd")
    assert_type(n, int)


def context_api() -> None:
    ctx = qloop.AioContext(fdmon="auto")
    assert_type(ctx.closed, bool)
    assert_type(ctx.fdmon, Literal["poll", "epoll", "io_uring"])
    ctx.set_exception_handler(lambda c, exc: print(c, exc))
    handler = ctx.get_exception_handler()
    if handler is not None:
        handler(ctx, ValueError("x"))
    ctx.notify()

    a, b = socket.socketpair()
    ctx.set_fd_handler(a, io_read=lambda: a.recv(10), io_write=None)
    ctx.set_fd_handler(a.fileno(), lambda: None, None, lambda: False, lambda: None)
    ctx.set_fd_poll(a, io_poll_begin=lambda: None, io_poll_end=lambda: None)
    ctx.set_fd_handler(a)
    ctx.set_poll_params(32_768, 2, 2)

    with qloop.EventNotifier(active=False, use_pipe=False) as e:
        assert_type(e.fileno(), int)
        assert_type(e.write_fileno(), int)
        e.set()
        assert_type(e.test_and_clear(), bool)
        ctx.set_event_notifier(e, lambda n: n.test_and_clear(), lambda n: False, lambda n: None)
        ctx.set_event_notifier_poll(e, lambda n: None, lambda n: None)
        ctx.set_event_notifier(e, None)
        assert_type(e.closed, bool)
    e.close()

    bh = ctx.bh_new(lambda: None, name="mine")
    assert_type(bh, qloop.BH)
    bh.schedule()
    bh.schedule_idle()
    bh.cancel()
    assert_type(bh.name, str)
    assert_type(bh.deleted, bool)
    bh.delete()
    ctx.bh_schedule_oneshot(lambda: None, name="once")

    rt = qloop.ClockType.REALTIME
    t = ctx.timer_new(rt, qloop.SCALE_US, lambda: None, attributes=qloop.TIMER_ATTR_EXTERNAL)
    assert_type(t, qloop.Timer)
    assert_type(ctx.timer_new_ns(rt, lambda: None), qloop.Timer)
    assert_type(ctx.timer_new_us(rt, lambda: None), qloop.Timer)
    tm = ctx.timer_new_ms(rt, lambda: None)
    assert_type(tm, qloop.Timer)
    t.mod(qloop.clock_get_us(rt) + 10)
    t.mod_ns(qloop.clock_get_ns(rt) + 10 * qloop.SCALE_MS)
    t.mod_anticipate(qloop.clock_get_us(rt))
    t.mod_anticipate_ns(qloop.clock_get_ns(rt))
    assert_type(t.pending, bool)
    assert_type(t.expired(qloop.clock_get_ms(rt)), bool)
    assert_type(t.expire_time_ns, int)
    assert_type(t.clock, qloop.ClockType)
    assert_type(t.scale, int)
    assert_type(t.attributes & qloop.TIMER_ATTR_ALL, int)
    t.delete()
    tm.delete()

    assert_type(ctx.compute_timeout(), int)
    assert_type(ctx.poll(False), bool)
    assert_type(ctx.timers_deadline(), int)
    assert_type(ctx.run_timers(), bool)
    assert_type(ctx.source_prepare(), int)
    fds = ctx.source_query()
    assert_type(fds, list[tuple[int, int]])
    assert_type(ctx.source_check([0] * len(fds)), bool)
    assert_type(ctx.source_dispatch(), bool)
    assert_type(ctx.resource_counts(), tuple[int, int, int])

    done: list[str] = []
    co = qloop.Coroutine(coroutine_body(done), ctx=ctx)
    ctx.co_schedule(co)
    qloop.co_wake(co)
    co.enter()
    assert_type(co.done, bool)
    assert_type(co.running, bool)
    assert_type(co.ctx, qloop.AioContext | None)
    qloop.set_current_aio_context(ctx)
    assert_type(qloop.get_current_aio_context(), qloop.AioContext | None)
    qloop.set_current_aio_context(None)

    pool = ctx.thread_pool()
    assert_type(pool, qloop.ThreadPool)
    req = pool.submit(len, "abc", callback=print)
    assert_type(req, qloop.ThreadPoolRequest)
    assert_type(req.state, Literal["queued", "active", "done"])
    assert_type(req.done, bool)
    assert_type(req.cancelled, bool)
    assert_type(req.cancel(), bool)
    pool.set_params(0, 4)
    assert_type(pool.min_threads + pool.max_threads + pool.threads + pool.idle_threads, int)
    assert_type(pool.ctx, qloop.AioContext)
    assert_type(ctx.wait_while(lambda: not req.done), bool)
    assert_type(qloop.aio_wait_while(ctx, lambda: False), bool)
    qloop.aio_wait_kick()
    qloop.aio_wait_bh_oneshot(ctx, lambda: None)
    with qloop.IOThread(name="io") as iothread:
        assert_type(iothread.ctx, qloop.AioContext)
        assert_type(iothread.name, str)
        iothread.ctx.co_schedule(qloop.Coroutine(hop(iothread.ctx, pool), ctx=ctx))
    iothread.join()

    try:
        src = ctx.g_source()
        src.attach(None)
        src.destroy()
        assert_type(src.is_destroyed(), bool)
    except qloop.GLibUnavailable as exc:
        assert_type(exc, qloop.GLibUnavailable)
    with ctx:
        pass
    ctx.close()
    a.close()
    b.close()


def clocks() -> None:
    assert_type(qloop.soonest_timeout(-1, 5), int)
    assert_type(qloop.timeout_ns_to_ms(1), int)
    v = qloop.ClockType.VIRTUAL
    qloop.clock_set_manual(True)
    assert qloop.clock_is_manual()
    qloop.clock_enable(v, True)
    assert_type(qloop.clock_is_enabled(v), bool)
    assert_type(qloop.clock_advance_virtual_time(qloop.clock_get_ns(v) + 10), int)
    assert_type(qloop.clock_step(), int)
    assert_type(qloop.clock_step(1_000), int)
    qloop.clock_set_manual(False)


def notifier_lists() -> None:
    nl: qloop.NotifierList[str] = qloop.NotifierList()
    nl.add(lambda s: print(s.upper()))
    nl.notify("hello")
    assert_type(nl.empty(), bool)
    assert_type(len(nl), int)
    qloop.shutdown_notifiers.add(lambda cause: print(cause.name))
    qloop.powerdown_notifiers.add(lambda _: None)
    qloop.suspend_notifiers.add(lambda _: None)
    qloop.wakeup_notifiers.add(lambda reason: print(reason.name))


def main_loop_api() -> int:
    qloop.init_main_loop()
    assert_type(qloop.get_aio_context(), qloop.AioContext)
    assert_type(qloop.iohandler_get_aio_context(), qloop.AioContext)
    qloop.notify_event()
    assert_type(qloop.bh_new(lambda: None, name="main"), qloop.BH)
    rt = qloop.ClockType.REALTIME
    assert_type(qloop.timer_new(rt, qloop.SCALE_NS, lambda: None), qloop.Timer)
    assert_type(qloop.timer_new_ns(rt, lambda: None), qloop.Timer)
    assert_type(qloop.timer_new_us(rt, lambda: None), qloop.Timer)
    assert_type(qloop.timer_new_ms(rt, lambda: None, attributes=0), qloop.Timer)

    r, w = socket.socketpair()
    qloop.set_fd_handler(r, lambda: r.recv(1), None)
    qloop.set_fd_handler(r, None)
    with qloop.EventNotifier() as n:
        qloop.event_notifier_set_handler(n, lambda e: e.test_and_clear())
        qloop.event_notifier_set_handler(n, None)

    def on_poll(mlpoll: qloop.MainLoopPoll) -> None:
        if mlpoll.state == qloop.MainLoopPollState.FILL:
            mlpoll.pollfds.append(qloop.PollFD(w, events=1))
            mlpoll.timeout = min(mlpoll.timeout, 100)
        else:
            assert_type(mlpoll.pollfds[0].revents, int)

    qloop.add_main_loop_poll_notifier(on_poll)
    assert_type(qloop.main_loop_wait(nonblocking=True), int)
    qloop.remove_main_loop_poll_notifier(on_poll)

    qloop.bql_lock()
    assert_type(qloop.bql_locked(), bool)
    qloop.bql_unlock()
    with qloop.bql:
        pass

    qloop.add_signal_handler(signal.SIGUSR1, lambda: None)
    assert_type(qloop.remove_signal_handler(signal.SIGUSR1), bool)
    assert_type(qloop.add_child_watch(12345), int)
    assert_type(qloop.add_child_watch(12345, lambda pid, code: print(pid, code)), int)

    assert_type(qloop.runstate_get(), qloop.RunState)
    qloop.runstate_set(qloop.RunState.PRELAUNCH)
    assert_type(qloop.runstate_is_running(), bool)
    assert_type(qloop.runstate_check(qloop.RunState.RUNNING), bool)
    handle = qloop.add_vm_change_state_handler(lambda running, state: print(running, state.name))
    qloop.vm_start()
    qloop.vm_stop()
    qloop.vm_stop(qloop.RunState.PAUSED)
    qloop.remove_vm_change_state_handler(handle)
    qloop.register_reset(print)
    qloop.unregister_reset(print)
    qloop.set_shutdown_action("pause")
    qloop.set_reboot_action("shutdown")
    qloop.system_wakeup_enable(qloop.WakeupReason.RTC, True)
    qloop.system_suspend_request()
    qloop.system_wakeup_request(qloop.WakeupReason.RTC)
    qloop.system_powerdown_request()
    qloop.debug_request()
    qloop.vm_stop_request(qloop.RunState.PAUSED)
    qloop.system_reset_request(qloop.ShutdownCause.GUEST_RESET)
    qloop.system_killed(signal.SIGTERM, pid=1)
    qloop.system_shutdown_request(qloop.ShutdownCause.HOST_QMP_QUIT, exit_code=3)
    assert_type(qloop.main_loop_should_exit(), bool)
    status = qloop.main_loop()
    assert_type(status, int)
    r.close()
    w.close()
    return status


async def asyncio_main() -> int:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0)
    return 7 if loop.is_running() else 0


def asyncio_loop_api() -> None:
    loop = qloop.new_event_loop()
    assert_type(loop, qloop.EventLoop)
    assert_type(loop.aio_context, qloop.AioContext)
    handle = loop.call_soon(print, "ready")
    handle.cancel()
    assert_type(loop.run_until_complete(asyncio_main()), int)
    loop.close()
    on_main = qloop.new_event_loop(ctx=qloop.get_aio_context())
    on_main.close()
    direct = qloop.EventLoop()  # the class itself, as uvloop.Loop() is used
    timer = direct.call_later(0.5, print, "later")
    assert_type(timer.when(), float)
    timer.cancel()
    assert_type(direct.time(), float)
    assert_type(direct.create_task(asyncio_main()), asyncio.Task[int])
    direct.run_until_complete(asyncio.sleep(0))
    direct.close()
    policy = qloop.EventLoopPolicy()
    assert_type(policy.new_event_loop(), qloop.EventLoop)
    assert_type(qloop.run(asyncio_main(), debug=False), int)
    with asyncio.Runner(loop_factory=qloop.new_event_loop) as runner:
        assert_type(runner.run(asyncio_main()), int)
    qloop.install()


async def virtual_time_main() -> float:
    await asyncio.sleep(3600)
    assert_type(await qloop.advance(1.5), float)
    return asyncio.get_running_loop().time()


def virtual_time_api() -> None:
    loop = qloop.new_event_loop(virtual_time=True, autojump=False, start=10.0,
                                autojump_after=None)
    assert_type(loop.virtual_time, bool)
    assert_type(loop.autojump, bool)
    assert_type(loop.autojump_after, float | None)
    assert_type(loop.advance(60), float)
    loop.close()
    assert_type(qloop.run(virtual_time_main(), virtual_time=True, autojump_after=0.01), float)
    policy = qloop.EventLoopPolicy(virtual_time=True, start=0.0, autojump=True)
    policy.new_event_loop().close()
    try:
        qloop.run(asyncio.Event().wait(), virtual_time=True)
    except qloop.VirtualTimeDeadlock as exc:
        assert_type(exc.tasks, tuple[asyncio.Task[Any], ...])
        assert_type(exc.loop_time, float | None)


def package() -> None:
    assert_type(qloop.__version__, str)
    impl: str = qloop.IMPLEMENTATION
    assert_type(qloop.USE_EXTENSIONS, bool)
    print(impl, qloop.__all__)
