"""GLib integration, both ways (docs/glib.md, docs/main-loop-iteration.md), on both
implementations.

* GLib as a guest of qloop: ``main_loop_wait()`` / ``main_loop()`` run GLib's default
  GMainContext (prepare/query → one merged poll → check/dispatch), so GLib timeouts, idles,
  io watches, child watches and Gio async results fire inside qloop's loop, and GLib's
  timeout bounds qloop's wait.
* qloop as a guest of GLib: ``AioContext.g_source()`` attached to a ``GLib.MainContext``
  lets a ``GLib.MainLoop`` drive the context's BHs, timers and fd handlers; the notify_me
  bit-0 window (docs/glib.md) makes a cross-thread notify wake the outer loop.
* With ``QLOOP_NO_GLIB=1`` (a subprocess); without PyGObject: ``test_glib_unavailable.py``.

GLib's default main context is process-global: every source a test adds to it is destroyed
at teardown (the ``glib_default`` fixture), and contexts whose source was attached are closed.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
import time

import pytest

pytest.importorskip("gi")

import gi

gi.require_version("GLib", "2.0")
gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib

from _mainloop_support import (
    PROMPT_S,
    join,
    run_python_json,
    start_thread,
    wait_until,
    wait_until_thread_sleeps,
)

# A GLib loop in these tests is always bounded by a watchdog source that quits it after this.
WATCHDOG_MS = 10000  # far beyond PROMPT_S twice (the helper's wait, then the wake-up)


# --------------------------------------------------------------------------------------------
# helpers


class GLibDefaultSources:
    """Source ids added to GLib's default main context; all destroyed at teardown."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def add(self, source_id: int) -> int:
        assert source_id > 0
        self.ids.append(source_id)
        return source_id

    def cleanup(self) -> None:
        default = GLib.MainContext.default()
        for source_id in self.ids:
            src = default.find_source_by_id(source_id)
            if src is not None and not src.is_destroyed():
                src.destroy()
        self.ids.clear()


@pytest.fixture
def glib_default():
    tracker = GLibDefaultSources()
    yield tracker
    tracker.cleanup()
    # main_loop_wait must have released GLib's default context (docs/main-loop-iteration.md)
    assert not GLib.MainContext.default().is_owner()


class GLibLoop:
    """A GLib.MainLoop on a fresh (or the default) GMainContext, with a watchdog source that
    quits the loop (and records it) if the test would otherwise hang."""

    def __init__(self, use_default: bool = False) -> None:
        self.context = GLib.MainContext.default() if use_default else GLib.MainContext.new()
        self.loop = GLib.MainLoop.new(self.context, False)
        self.watchdog_fired = False
        self.sources: list = []
        self._watchdog = None

    def attach(self, source) -> int:
        self.sources.append(source)
        return source.attach(self.context)

    def arm_watchdog(self, ms: int = WATCHDOG_MS) -> None:
        def fire(*_args):
            self.watchdog_fired = True
            self.loop.quit()
            return False

        dog = GLib.timeout_source_new(ms)
        dog.set_callback(fire)
        dog.attach(self.context)
        self._watchdog = dog

    def run(self) -> None:
        self.arm_watchdog()
        try:
            self.loop.run()
        finally:
            self._watchdog.destroy()
            self._watchdog = None

    def drain(self) -> None:
        for _ in range(100):
            if not self.context.iteration(False):
                return
        raise AssertionError("GLib context did not drain in 100 iterations")

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.destroy()
        for src in self.sources:
            if not src.is_destroyed():
                src.destroy()


@pytest.fixture
def glib_loop():
    made: list[GLibLoop] = []

    def factory(use_default: bool = False) -> GLibLoop:
        lp = GLibLoop(use_default)
        made.append(lp)
        return lp

    yield factory
    for lp in made:
        lp.close()


# The threads below wait (wait_until_thread_sleeps) until the loop sleeps in its wait before
# they wake it, and go on when that is not seen in time: the wake-up must work whether or not
# the loop is asleep yet, and a loaded machine can keep the sampling thread off the CPU for
# the whole window.  That the idle loop does go to sleep (instead of spinning) is checked
# deterministically by GLibLoop.drain().


def _expected_impl(mod) -> str:
    return "fallback" if mod.__name__ == "qloop._fallback" else "core"


# --------------------------------------------------------------------------------------------
# 1. GLib's sources fire inside main_loop_wait() / main_loop()  (docs/main-loop-iteration.md)


def test_glib_timeout_fires_in_main_loop_wait(main_loop, guard, glib_default):
    mod = main_loop
    fired = []
    glib_default.add(GLib.timeout_add(10, lambda: fired.append(mod.bql_locked()) or False))
    wait_until(mod, lambda: bool(fired))
    assert fired == [True]  # GLib dispatch runs with the BQL held
    assert not GLib.MainContext.default().is_owner()  # released after the iteration


def test_glib_idle_fires_in_one_main_loop_wait(main_loop, guard, glib_default):
    mod = main_loop
    fired = []
    glib_default.add(GLib.idle_add(lambda: fired.append(mod.bql_locked()) or False))
    mod.main_loop_wait(False)  # an idle source is ready at once: no blocking wait
    assert fired == [True]
    mod.main_loop_wait(True)
    assert fired == [True]  # returned False: removed, not run again


def test_glib_io_watch_wakes_blocking_main_loop_wait(main_loop, guard, glib_default, sockpair):
    """GLib's fds are in qloop's one poll: data written by another thread while
    main_loop_wait() sleeps wakes it and the GLib io watch runs in that same iteration."""
    mod = main_loop
    a, b = sockpair()
    got = []

    def on_readable(fd, condition):
        got.append((fd, bool(condition & GLib.IOCondition.IN), a.recv(16)))
        return True  # keep the watch: removed by the fixture

    glib_default.add(GLib.io_add_watch(a.fileno(), GLib.PRIORITY_DEFAULT,
                                       GLib.IOCondition.IN, on_readable))
    mod.main_loop_wait(True)
    assert got == []  # nothing to read yet

    main_id = threading.get_native_id()

    sent_at = []

    def writer():
        wait_until_thread_sleeps(main_id)
        sent_at.append(time.monotonic())
        b.send(b"ping")

    t = start_thread(writer)
    n = wait_until(mod, lambda: bool(got))
    woke_at = time.monotonic()
    join(t)
    assert got == [(a.fileno(), True, b"ping")]
    assert n == 1
    # measured from the send: the writer itself may wait up to PROMPT_S for the loop to sleep
    assert woke_at - sent_at[0] < PROMPT_S


def test_glib_child_watch_fires_in_main_loop_wait(main_loop, guard, glib_default):
    mod = main_loop
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "raise SystemExit(7)"],
                         dict(os.environ))
    got = []
    try:
        glib_default.add(GLib.child_watch_add(
            GLib.PRIORITY_DEFAULT, pid,
            lambda p, status: got.append((p, os.waitstatus_to_exitcode(status)))))
        wait_until(mod, lambda: bool(got), timeout=10.0)
    finally:
        if not got:  # do not leave a zombie behind
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    assert got == [(pid, 7)]
    with pytest.raises(ChildProcessError):  # GLib reaped it
        os.waitpid(pid, os.WNOHANG)


def test_gio_async_call_completes_in_main_loop_wait(main_loop, guard, glib_default, tmp_path):
    """Gio runs the read in a worker thread and posts the result to the default context;
    the cross-thread wake-up of GLib's context must wake qloop's merged poll."""
    mod = main_loop
    path = tmp_path / "payload.bin"
    payload = b"qloop drives Gio\n" * 64
    path.write_bytes(payload)
    got = []

    def done(gfile, result):
        ok, data, _etag = gfile.load_contents_finish(result)
        got.append((ok, bytes(data), mod.bql_locked()))

    Gio.File.new_for_path(str(path)).load_contents_async(None, done)
    wait_until(mod, lambda: bool(got))
    assert got == [(True, payload, True)]


def test_gio_subprocess_communicate_async_in_main_loop_wait(main_loop, guard, glib_default):
    mod = main_loop
    proc = Gio.Subprocess.new([sys.executable, "-c", "print('out')"],
                              Gio.SubprocessFlags.STDOUT_PIPE)
    got = []

    def done(p, result):
        ok, out, _err = p.communicate_utf8_finish(result)
        got.append((ok, out, p.get_exit_status()))

    proc.communicate_utf8_async(None, None, done)
    wait_until(mod, lambda: bool(got), timeout=10.0)
    assert got == [(True, "out\n", 0)]


def test_main_loop_runs_glib_sources_and_ends_from_glib_callback(main_loop, glib_default,
                                                                 sockpair):
    """main_loop() itself: an idle, an io watch and a timeout run; the timeout's callback asks
    for a shutdown and main_loop() returns 0."""
    mod = main_loop
    a, b = sockpair()
    b.send(b"x")
    log = []

    def on_io(fd, condition):
        log.append(("io", a.recv(16)))
        return False

    def on_idle():
        log.append("idle")
        return False

    def on_timeout():
        log.append("timeout")
        mod.system_shutdown_request(mod.ShutdownCause.HOST_QMP_QUIT)
        return False

    glib_default.add(GLib.idle_add(on_idle))
    glib_default.add(GLib.io_add_watch(a.fileno(), GLib.PRIORITY_DEFAULT,
                                       GLib.IOCondition.IN, on_io))
    glib_default.add(GLib.timeout_add(30, on_timeout))

    # watchdog: a main-loop timer ends main_loop() with status 99 if GLib never fires
    dog_fired = []

    def dog():
        dog_fired.append(True)
        mod.system_shutdown_request(mod.ShutdownCause.HOST_ERROR, exit_code=99)

    rt = mod.ClockType.REALTIME
    watchdog = mod.timer_new_ms(rt, dog)
    watchdog.mod(mod.clock_get_ms(rt) + WATCHDOG_MS)
    try:
        status = mod.main_loop()
    finally:
        watchdog.delete()
    assert dog_fired == []
    assert status == 0
    assert "timeout" in log and "idle" in log and ("io", b"x") in log
    assert log[-1] == "timeout"
    assert not mod.bql_locked()


# --------------------------------------------------------------------------------------------
# 2. GLib's timeout bounds qloop's wait (the soonest of GLib's and qloop's timeouts)


def test_glib_timeout_bounds_main_loop_wait_without_busy_spin(main_loop, guard, glib_default):
    mod = main_loop
    fired = []
    t0 = time.monotonic()
    glib_default.add(GLib.timeout_add(20, lambda: fired.append(time.monotonic()) or False))
    n = wait_until(mod, lambda: bool(fired))
    elapsed_ms = (fired[0] - t0) * 1000.0
    assert elapsed_ms >= 20.0, f"GLib timeout fired early: {elapsed_ms:.1f} ms"
    assert elapsed_ms < 20.0 + 50.0, f"GLib timeout fired late: {elapsed_ms:.1f} ms"
    assert 1 <= n <= 3, f"{n} main_loop_wait iterations for one 20 ms timeout"


# --------------------------------------------------------------------------------------------
# 3. an AioContext as a GLib source (docs/glib.md)


@pytest.mark.parametrize("fdmon", ["auto", "epoll", "io_uring"])
@pytest.mark.parametrize("which", ["new-context", "default-context"])
def test_g_source_runs_bh_fd_handler_and_timer_under_glib(make_ctx, qloop_module, glib_loop,
                                                          sockpair, which, fdmon):
    """With io_uring the ring fd is the source's one fd (as epoll's fd under epoll)."""
    mod = qloop_module
    ctx = make_ctx(fdmon=fdmon)
    lp = glib_loop(use_default=(which == "default-context"))
    a, b = sockpair()
    log = []
    rt = mod.ClockType.REALTIME
    armed_at = []

    def on_timer():
        log.append(("timer", mod.clock_get_ns(rt) >= armed_at[0] + 10_000_000))
        lp.loop.quit()

    timer = ctx.timer_new_ns(rt, on_timer)

    def on_readable():
        log.append(("fd", a.recv(16)))
        ctx.set_fd_handler(a, None)
        armed_at.append(mod.clock_get_ns(rt))
        timer.mod_ns(armed_at[0] + 10_000_000)

    def on_bh():
        log.append("bh")
        b.send(b"data")

    ctx.set_fd_handler(a, on_readable)
    bh = ctx.bh_new(on_bh)
    src = ctx.g_source()
    assert isinstance(src, GLib.Source)
    lp.attach(src)
    bh.schedule()
    lp.run()
    assert not lp.watchdog_fired
    assert log == ["bh", ("fd", b"data"), ("timer", True)]
    assert not src.is_destroyed()
    ctx.close()
    assert src.is_destroyed()


def test_g_source_callback_exception_is_logged_and_source_kept(make_ctx, qloop_module,
                                                               glib_loop, caplog, ctx_checks):
    ctx_checks.expect_errors(ValueError)  # the recorder sees it before GLib's dispatch logs it
    ctx = make_ctx()
    lp = glib_loop()
    src = ctx.g_source()
    lp.attach(src)
    log = []
    boom = ValueError("boom from a BH under GLib")

    def quit_bh():
        log.append("after")
        lp.loop.quit()

    good = ctx.bh_new(quit_bh)

    def bad_bh():
        log.append("bad")
        good.schedule()
        raise boom

    bad = ctx.bh_new(bad_bh)
    bad.schedule()
    with caplog.at_level(logging.ERROR, logger="qloop"):
        lp.run()
    assert not lp.watchdog_fired
    assert log == ["bad", "after"]
    records = [r for r in caplog.records if r.name == "qloop" and r.exc_info]
    assert any(r.exc_info[1] is boom for r in records), caplog.records
    assert not src.is_destroyed()
    assert ctx.g_source() is src
    # the source still drives the context
    bad2 = ctx.bh_new(lambda: (log.append("again"), lp.loop.quit()))
    bad2.schedule()
    lp.run()
    assert not lp.watchdog_fired
    assert log[-1] == "again"


@pytest.mark.parametrize("fdmon", ["auto", "io_uring"])
def test_g_source_timer_bounds_glib_wait(make_ctx, qloop_module, glib_loop, fdmon):
    """prepare() gives GLib the context's timer deadline (rounded up to ms): a 30 ms timer
    fires on time, neither early nor after the watchdog."""
    mod = qloop_module
    ctx = make_ctx(fdmon=fdmon)
    lp = glib_loop()
    lp.attach(ctx.g_source())
    lp.drain()
    rt = mod.ClockType.REALTIME
    fired = []
    t0 = time.monotonic()
    timer = ctx.timer_new_ms(rt, lambda: (fired.append(time.monotonic()), lp.loop.quit()))
    timer.mod(mod.clock_get_ms(rt) + 30)
    lp.run()
    assert not lp.watchdog_fired
    assert len(fired) == 1
    assert 0.0285 <= fired[0] - t0 < PROMPT_S


# --------------------------------------------------------------------------------------------
# 4. a BH scheduled from another thread wakes a sleeping GLib loop (docs/notify.md)


@pytest.mark.parametrize("fdmon", ["auto", "io_uring"])
def test_bh_from_thread_wakes_sleeping_glib_loop(make_ctx, qloop_module, glib_loop, fdmon):
    ctx = make_ctx(fdmon=fdmon)
    lp = glib_loop()
    lp.attach(ctx.g_source())
    lp.drain()  # nothing left to do: the loop sleeps with an infinite timeout (watchdog aside)
    ran = []
    scheduled_at = []

    def on_bh():
        ran.append(time.monotonic())
        lp.loop.quit()

    bh = ctx.bh_new(on_bh)
    main_id = threading.get_native_id()

    def producer():
        wait_until_thread_sleeps(main_id)
        scheduled_at.append(time.monotonic())
        bh.schedule()

    def start_producer():
        starter.append(start_thread(producer))
        return False

    # start the producer from inside the running loop (a one-shot idle), so it can only
    # schedule the BH once the loop runs; then it waits until the loop sleeps in poll
    starter: list = []
    idle = GLib.idle_source_new()
    idle.set_callback(lambda *_: start_producer())
    lp.attach(idle)
    lp.run()
    assert starter, "the producer thread was not started"
    join(starter[0])
    assert not lp.watchdog_fired, "the BH did not wake the GLib loop"
    assert len(ran) == 1
    assert ran[0] - scheduled_at[0] < PROMPT_S


# --------------------------------------------------------------------------------------------
# 5. the notify_me bit-0 window between the source's prepare and check (docs/glib.md)


def _notify_from_thread(ctx) -> None:
    t = start_thread(ctx.notify)
    join(t)


def _readable(fd: int, timeout_ms: int) -> bool:
    p = select.poll()
    p.register(fd, select.POLLIN)
    return any(ev & select.POLLIN for _, ev in p.poll(timeout_ms))


def test_notify_me_bit0_window(ctx):
    fds = ctx.source_query()
    assert len(fds) == 1, fds  # a fresh context: only its own notifier
    notifier_fd = fds[0][0]

    # window closed (no prepare yet): notify() may skip the eventfd write
    _notify_from_thread(ctx)
    assert not _readable(notifier_fd, 0)

    # prepare opens the window: a notify from another thread must wake the outer loop
    assert ctx.source_prepare() == -1
    assert [fd for fd, _ in ctx.source_query()] == [notifier_fd]
    _notify_from_thread(ctx)
    assert _readable(notifier_fd, 1000), "notify() in the prepare/check window did not " \
                                         "make the notifier readable"

    # check closes the window and accepts the notify; dispatch drains the notifier
    ctx.source_check([select.POLLIN])
    ctx.source_dispatch()
    assert not _readable(notifier_fd, 0)
    _notify_from_thread(ctx)
    assert not _readable(notifier_fd, 0), "the window stayed open after source_check()"

    # and it opens again on the next prepare
    ctx.source_prepare()
    ctx.source_query()
    _notify_from_thread(ctx)
    assert _readable(notifier_fd, 1000)
    ctx.source_check([select.POLLIN])
    ctx.source_dispatch()
    assert not _readable(notifier_fd, 0)


def test_notify_in_window_wakes_glib_iteration(make_ctx, qloop_module, glib_loop):
    """The same window seen through GLib: a notify() (not a BH) from another thread while a
    GLib loop sleeps on the source makes the loop's poll return."""
    ctx = make_ctx()
    lp = glib_loop()
    lp.attach(ctx.g_source())
    lp.drain()
    main_id = threading.get_native_id()
    woke = []

    notified_at = []

    def notifier():
        wait_until_thread_sleeps(main_id)
        notified_at.append(time.monotonic())
        ctx.notify()

    t = start_thread(notifier)
    lp.arm_watchdog()
    lp.context.iteration(True)  # returns once something (the notifier or the watchdog) is ready
    woke.append(time.monotonic())
    join(t)
    assert not lp.watchdog_fired
    # measured from the notify: the notifier itself may wait up to PROMPT_S for the loop to sleep
    assert woke[0] - notified_at[0] < PROMPT_S


# --------------------------------------------------------------------------------------------
# 6. g_source() identity and lifetime


def test_g_source_identity_and_close(make_ctx, glib_loop):
    ctx = make_ctx(owned=False)
    lp = glib_loop()
    s1 = ctx.g_source()
    assert ctx.g_source() is s1
    lp.attach(s1)
    assert ctx.g_source() is s1  # attaching does not change it
    assert s1.get_context() is not None
    lp.drain()
    assert ctx.g_source() is s1
    ctx.close()
    assert s1.is_destroyed()
    lp.drain()  # GLib no longer calls into the closed context
    with pytest.raises(RuntimeError):
        ctx.g_source()
    ctx.close()  # idempotent


def test_g_source_new_after_destroy(make_ctx, glib_loop):
    ctx = make_ctx()
    lp = glib_loop()
    s1 = ctx.g_source()
    lp.attach(s1)
    s1.destroy()
    s2 = ctx.g_source()
    assert s2 is not s1
    assert not s2.is_destroyed()
    assert ctx.g_source() is s2
    # the new source drives the context
    ran = []
    lp.attach(s2)
    ctx.bh_schedule_oneshot(lambda: (ran.append(1), lp.loop.quit()))
    lp.run()
    assert not lp.watchdog_fired
    assert ran == [1]


# --------------------------------------------------------------------------------------------
# 7. without PyGObject: in test_glib_unavailable.py (it must run where gi is not installed)


# --------------------------------------------------------------------------------------------
# 8. QLOOP_NO_GLIB=1: main_loop_wait without a GLib guest (subprocess)

_NO_GLIB_CODE = r"""
import importlib, json
import qloop
mod = importlib.import_module(MODNAME)
from gi.repository import GLib
out = {"impl": qloop.IMPLEMENTATION}
mod.init_main_loop()


def bound(mlpoll):  # no wait longer than 1 s: a lost wake-up fails instead of hanging
    if mlpoll.state == mod.MainLoopPollState.FILL and not 0 <= mlpoll.timeout <= 1000:
        mlpoll.timeout = 1000


mod.add_main_loop_poll_notifier(bound)
glib_ran = []
idle_id = GLib.idle_add(lambda: glib_ran.append("idle") or False)
ran = []
mod.bh_new(lambda: ran.append("bh")).schedule()
rt = mod.ClockType.REALTIME
t = mod.timer_new_ms(rt, lambda: ran.append("timer"))
t.mod(mod.clock_get_ms(rt) + 5)
n = 0
while "timer" not in ran and n < 50:
    mod.main_loop_wait(False)
    n += 1
out["ran"] = ran
out["glib_ran_under_qloop"] = list(glib_ran)
out["default_owned_after"] = GLib.MainContext.default().is_owner()
GLib.MainContext.default().iteration(False)  # the idle source was real
out["glib_ran_after"] = glib_ran
mod.bh_new(lambda: mod.system_shutdown_request(mod.ShutdownCause.HOST_QMP_QUIT)).schedule()
out["status"] = mod.main_loop()
print(json.dumps(out))
"""


def test_no_glib_env_main_loop_wait_without_glib_guest(qloop_module):
    mod = qloop_module
    out = run_python_json(mod, f"MODNAME = {mod.__name__!r}\n" + _NO_GLIB_CODE, QLOOP_NO_GLIB="1")
    assert out["impl"] == _expected_impl(mod)
    assert out["ran"] == ["bh", "timer"]
    assert out["glib_ran_under_qloop"] == []  # no GLib guest: the default context not run
    assert out["default_owned_after"] is False
    assert out["glib_ran_after"] == ["idle"]
    assert out["status"] == 0
