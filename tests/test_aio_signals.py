"""The asyncio event loop: add_signal_handler / remove_signal_handler with real signals (sent
to this process with os.kill), on qloop's two implementations and asyncio's loop as the
reference; coexistence with qloop.add_signal_handler inside qloop.main_loop() on qloop's."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import ctypes
import functools
import operator
import os
import signal
import threading
from types import ModuleType
from typing import Any

import pytest

from _aio_support import run, watchdog
from _mainloop_support import wait_until

pytestmark = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                reason="signal handlers need the main thread")

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")
# a second signal whose default action is harmless (SIGUSR2 is the asyncio suite's watchdog)
OTHER = signal.SIGWINCH


@pytest.fixture(autouse=True)
def _signals_restored() -> Any:
    """Every test leaves SIGUSR1, OTHER and SIGINT as it found them."""
    before = {s: signal.getsignal(s) for s in (signal.SIGUSR1, OTHER, signal.SIGINT)}
    yield
    after = {s: signal.getsignal(s) for s in before}
    for s, h in before.items():
        signal.signal(s, h)
    assert after == before, "a test left a signal handler behind"


async def until(cond: Any) -> None:
    while not cond():
        await asyncio.sleep(0.001)


def test_signal_runs_the_callback_in_the_loop(loop: asyncio.AbstractEventLoop) -> None:
    got: list[Any] = []

    def handler(*args: Any) -> None:
        got.append((args, VAR.get(), asyncio.get_running_loop() is loop))

    async def main() -> None:
        token = VAR.set("at add time")
        loop.add_signal_handler(signal.SIGUSR1, handler, "a", 1)
        VAR.reset(token)
        os.kill(os.getpid(), signal.SIGUSR1)
        await until(lambda: got)
        os.kill(os.getpid(), signal.SIGUSR1)
        await until(lambda: len(got) == 2)

    run(loop, main())
    # the context captured when the handler was added, as asyncio's Handle does
    assert got == [(("a", 1), "at add time", True)] * 2
    assert loop.remove_signal_handler(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert not loop.remove_signal_handler(signal.SIGUSR1)


def test_signal_wakes_a_blocking_run_forever(loop: asyncio.AbstractEventLoop) -> None:
    caught: list[int] = []

    def handler() -> None:
        caught.append(1)
        loop.stop()

    loop.add_signal_handler(signal.SIGALRM, handler)
    check = watchdog(loop)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.01)  # arrives while the loop waits
        loop.run_forever()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        loop.remove_signal_handler(signal.SIGALRM)
    check()
    assert caught == [1]


def test_signal_from_another_thread(loop: asyncio.AbstractEventLoop) -> None:
    caught: list[int] = []

    def handler() -> None:
        caught.append(1)
        loop.stop()

    loop.add_signal_handler(OTHER, handler)
    t = threading.Thread(target=os.kill, args=(os.getpid(), OTHER))
    check = watchdog(loop)
    t.start()
    try:
        loop.run_forever()
    finally:
        t.join()
        loop.remove_signal_handler(OTHER)
    check()
    assert caught == [1]


def test_python_signal_handler_runs_amid_callbacks_in_c(loop: asyncio.AbstractEventLoop) -> None:
    """A ``signal.signal()`` handler runs while the loop runs callbacks written in C alone (no
    bytecode between them to run it), long before such a chain of batches ends."""
    ended: list[bool] = []
    seen: list[bool] = []  # per run of the handler: had the chain ended?

    def handler(signum: int, frame: Any) -> None:
        seen.append(bool(ended))

    # 1,000 batches, each queued by the previous one's C call: partial(call_soon, next stage);
    # the last records that the chain ended and stops the loop (C as well)
    stage: Any = functools.partial(
        collections.deque, map(operator.call, [functools.partial(ended.append, True), loop.stop]), 0)
    for _ in range(1000):
        stage = functools.partial(loop.call_soon, stage)
    # kill(2) through ctypes: os.kill() would run the handler itself, before it returns
    loop.call_soon(ctypes.CDLL(None, use_errno=True).kill, os.getpid(), signal.SIGUSR1)
    loop.call_soon(stage)
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        loop.run_forever()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert ended == [True]
    assert seen == [False]


def test_replacing_a_handler(loop: asyncio.AbstractEventLoop) -> None:
    got: list[str] = []

    async def main() -> None:
        loop.add_signal_handler(signal.SIGUSR1, got.append, "first")
        loop.add_signal_handler(signal.SIGUSR1, got.append, "second")
        os.kill(os.getpid(), signal.SIGUSR1)
        await until(lambda: got)
        await asyncio.sleep(0)

    run(loop, main())
    assert got == ["second"]
    assert loop.remove_signal_handler(signal.SIGUSR1)


def test_sigint_gets_default_int_handler_back(loop: asyncio.AbstractEventLoop) -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    got: list[int] = []

    async def main() -> None:
        loop.add_signal_handler(signal.SIGINT, got.append, 1)
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: the loop handles it
        await until(lambda: got)

    run(loop, main())
    assert loop.remove_signal_handler(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_bad_arguments(loop: asyncio.AbstractEventLoop) -> None:
    def cb() -> None:
        pass

    async def coro_fn() -> None:
        pass

    with pytest.raises(TypeError, match="sig must be an int"):
        loop.add_signal_handler("boom", cb)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sig must be an int"):
        loop.remove_signal_handler("boom")  # type: ignore[arg-type]
    for bad in (0, -1, signal.NSIG + 1):
        with pytest.raises(ValueError, match=f"invalid signal number {bad}"):
            loop.add_signal_handler(bad, cb)
        with pytest.raises(ValueError, match=f"invalid signal number {bad}"):
            loop.remove_signal_handler(bad)
    for sig in (signal.SIGKILL, signal.SIGSTOP):
        with pytest.raises(RuntimeError, match=f"sig {int(sig)} cannot be caught"):
            loop.add_signal_handler(sig, cb)
        assert not loop.remove_signal_handler(sig)
    with pytest.raises(TypeError, match="coroutines cannot be used with add_signal_handler"):
        loop.add_signal_handler(signal.SIGUSR1, coro_fn)
    coro = coro_fn()
    with pytest.raises(TypeError, match="coroutines cannot be used with add_signal_handler"):
        loop.add_signal_handler(signal.SIGUSR1, coro)  # type: ignore[arg-type]
    coro.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_non_callable_is_refused(qloop_loop: asyncio.AbstractEventLoop) -> None:
    # asyncio accepts it and fails when the signal comes; qloop checks callbacks at once
    with pytest.raises(TypeError, match="a callable object was expected"):
        qloop_loop.add_signal_handler(signal.SIGUSR1, 42)  # type: ignore[arg-type]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_closed_loop_and_other_threads(loop_factory: Any) -> None:
    loop = loop_factory()
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert len(errors) == 1  # RuntimeError: not the main thread
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)


def wakeup_fd() -> int:
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


def test_close_removes_the_handlers(loop_factory: Any) -> None:
    wakeup_before = wakeup_fd()
    loop = loop_factory()
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.add_signal_handler(OTHER, lambda: None)
    assert signal.getsignal(signal.SIGUSR1) != signal.SIG_DFL
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(OTHER) == signal.SIG_DFL
    assert wakeup_fd() == wakeup_before  # the wake-up fd given back


def test_previous_handler_is_restored(qloop_loop: asyncio.AbstractEventLoop) -> None:
    # qloop's hub gives a signal back the handler it had (asyncio would set SIG_DFL)
    def mine(signum: int, frame: Any) -> None:
        pass

    signal.signal(signal.SIGUSR1, mine)
    try:
        qloop_loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        assert qloop_loop.remove_signal_handler(signal.SIGUSR1)
        assert signal.getsignal(signal.SIGUSR1) is mine
    finally:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)


def test_two_loops_on_one_signal(qloop_loop_factory: Any) -> None:
    # both get every delivery: neither takes the wake-up fd or the handler from the other
    a, b = qloop_loop_factory(), qloop_loop_factory()
    got: list[str] = []
    a.add_signal_handler(signal.SIGUSR1, got.append, "a")
    b.add_signal_handler(signal.SIGUSR1, got.append, "b")
    os.kill(os.getpid(), signal.SIGUSR1)
    for lp in (a, b):
        run(lp, until(lambda: len(got) == 2) if lp is b else until(lambda: "a" in got))
    assert sorted(got) == ["a", "b"]
    a.close()
    assert signal.getsignal(signal.SIGUSR1) != signal.SIG_DFL  # b still handles it
    got.clear()
    os.kill(os.getpid(), signal.SIGUSR1)
    run(b, until(lambda: got))
    assert got == ["b"]
    b.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_loop_inside_main_loop_with_both_apis(main_loop: ModuleType, guard: Any) -> None:
    mod = main_loop
    loop = mod.new_event_loop(ctx=mod.get_aio_context())
    got: list[Any] = []
    mod.add_signal_handler(signal.SIGUSR1, lambda: got.append(("qloop", signal.SIGUSR1)))
    loop.add_signal_handler(OTHER, lambda: got.append(
        ("asyncio", OTHER, asyncio.get_running_loop() is loop)))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), OTHER)
        wait_until(mod, lambda: len(got) == 2)
        assert sorted(got, key=str) == [("asyncio", OTHER, True),
                                        ("qloop", signal.SIGUSR1)]
        # and once more, each API after the other was used
        got.clear()
        os.kill(os.getpid(), OTHER)
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_until(mod, lambda: len(got) == 2)
        assert len(got) == 2
    finally:
        assert loop.remove_signal_handler(OTHER)
        assert mod.remove_signal_handler(signal.SIGUSR1)
        loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(OTHER) == signal.SIG_DFL


def test_main_loop_shutdown_by_an_asyncio_signal_handler(main_loop: ModuleType,
                                                        guard: Any) -> None:
    mod = main_loop
    loop = mod.new_event_loop(ctx=mod.get_aio_context())
    loop.add_signal_handler(signal.SIGUSR1, mod.system_shutdown_request,
                            mod.ShutdownCause.HOST_SIGNAL)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    try:
        assert mod.main_loop() == 0
    finally:
        loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_storm_from_many_threads(loop: asyncio.AbstractEventLoop) -> None:
    # deliveries coalesce (Python's rule) but none is lost after the last one, nothing breaks
    count = [0]
    loop.add_signal_handler(signal.SIGUSR1, lambda: count.__setitem__(0, count[0] + 1))
    pid = os.getpid()

    def storm() -> None:
        for _ in range(200):
            os.kill(pid, signal.SIGUSR1)

    async def main() -> int:
        threads = [threading.Thread(target=storm) for _ in range(4)]
        for t in threads:
            t.start()
        await loop.run_in_executor(None, lambda: [t.join() for t in threads])
        before = count[0]
        os.kill(pid, signal.SIGUSR1)  # the one after the storm always gets through
        await until(lambda: count[0] > before)
        return count[0]

    try:
        n = run(loop, main())
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1)
    assert 2 <= n <= 801
