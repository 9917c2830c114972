"""main_loop: the process-wide main loop's iteration (``main_loop_wait``), QEMU's headline.

* ``main_loop_chain``: the BH chain of ``bh_chain`` driven by ``qloop.main_loop_wait(False)``
  (as a program built like QEMU runs it), with GLib's default context as a guest (``glib_on``)
  and without (``glib_off``: ``QLOOP_NO_GLIB=1`` at ``init_main_loop``).  asyncio/uvloop: the
  ``call_soon`` chain (the same for both variants).
  Bars: core >= 2x uvloop (GLib on), >= 3x uvloop (GLib off); fallback >= 1x asyncio (off).
* ``main_loop_iteration``: one iteration with 1 fd handler (an idle socket on the iohandler
  context), 1 main-loop timer and 1 poll notifier, nothing ready but the timer, which is due
  at once: ``main_loop_wait(False)`` woken by it, and the timer re-arms itself at "now".
  asyncio/uvloop: an idle reader and a ``call_at(loop.time())`` chain.
  Bar: core <= 1.5 us per iteration.
"""

from __future__ import annotations

import os
import socket

import pytest

from bench._common import run_rounds, scaled
from bench.test_bh_chain import asyncio_call_soon_chain

N_CHAIN = scaled(1_000_000)
N_ITER = scaled(200_000)


class MainLoop:
    """The implementation's main loop, (re)initialised with GLib on or off."""

    def __init__(self, mod, glib: bool) -> None:
        self.mod = mod
        mod._main_loop._shutdown_main_loop()
        saved = os.environ.get("QLOOP_NO_GLIB")
        if glib:
            os.environ.pop("QLOOP_NO_GLIB", None)
        else:
            os.environ["QLOOP_NO_GLIB"] = "1"
        try:
            mod.init_main_loop()
        finally:
            if saved is None:
                os.environ.pop("QLOOP_NO_GLIB", None)
            else:
                os.environ["QLOOP_NO_GLIB"] = saved
        for _ in range(3):
            mod.main_loop_wait(True)  # the initial notifications

    def close(self) -> None:
        self.mod._main_loop._shutdown_main_loop()


def qloop_main_loop_chain(ml: MainLoop, n_total: int) -> int:
    mod = ml.mod
    n = 0

    def cb():
        nonlocal n
        n += 1
        if n < n_total:
            schedule()

    bh = mod.bh_new(cb)
    schedule = bh.schedule
    wait = mod.main_loop_wait
    schedule()
    while n < n_total:
        wait(False)
    bh.delete()
    return n


@pytest.mark.benchmark(group="main_loop_chain")
@pytest.mark.parametrize("glib", ["glib_on", "glib_off"])
def test_main_loop_chain(benchmark, impl, glib):
    if impl.is_qloop:
        ml = MainLoop(impl.module, glib == "glib_on")
        try:
            run_rounds(benchmark, lambda: qloop_main_loop_chain(ml, N_CHAIN), ops=N_CHAIN,
                       expect=N_CHAIN, unit="callbacks", glib=glib)
        finally:
            ml.close()
    else:
        run_rounds(benchmark, lambda loop: asyncio_call_soon_chain(loop, N_CHAIN),
                   setup=lambda: (impl.open(),), cleanup=impl.close, ops=N_CHAIN,
                   expect=N_CHAIN, unit="callbacks", glib=glib)


def _noop(*args):
    pass


def _notifier(mlpoll):
    pass


def qloop_main_loop_iteration(ml: MainLoop, n_total: int) -> int:
    mod = ml.mod
    a, b = socket.socketpair()
    n = 0
    clock_get_ns = mod.clock_get_ns
    rt = mod.ClockType.REALTIME

    def tick():
        nonlocal n
        n += 1
        if n < n_total:
            timer.mod_ns(clock_get_ns(rt))  # due at once: wakes the next wait

    timer = mod.timer_new_ns(rt, tick)
    mod.set_fd_handler(a, _noop)  # idle: b never writes
    mod.add_main_loop_poll_notifier(_notifier)
    wait = mod.main_loop_wait
    try:
        timer.mod_ns(clock_get_ns(rt))
        while n < n_total:
            wait(False)
    finally:
        mod.remove_main_loop_poll_notifier(_notifier)
        mod.set_fd_handler(a, None, None)
        timer.delete()
        a.close()
        b.close()
    return n


def asyncio_iteration(loop, n_total: int) -> int:
    a, b = socket.socketpair()
    n = 0

    def tick():
        nonlocal n
        n += 1
        if n < n_total:
            call_at(time(), tick)
        else:
            loop.stop()

    call_at = loop.call_at
    time = loop.time
    loop.add_reader(a, _noop)
    try:
        call_at(time(), tick)
        loop.run_forever()
    finally:
        loop.remove_reader(a)
        a.close()
        b.close()
    return n


@pytest.mark.benchmark(group="main_loop_iteration")
def test_main_loop_iteration(benchmark, impl):
    if impl.is_qloop:
        ml = MainLoop(impl.module, glib=False)
        try:
            run_rounds(benchmark, lambda: qloop_main_loop_iteration(ml, N_ITER), ops=N_ITER,
                       expect=N_ITER, unit="iterations")
        finally:
            ml.close()
    else:
        run_rounds(benchmark, lambda loop: asyncio_iteration(loop, N_ITER),
                   setup=lambda: (impl.open(),), cleanup=impl.close, ops=N_ITER,
                   expect=N_ITER, unit="iterations")
