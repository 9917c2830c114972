"""Leaks: memory, fds and references after 100,000 BHs / timers / fd handlers, on both arms.

* memory: after a warm-up, a loop of 100,000 create/use/destroy cycles (including the paths
  where the callback raises and poll() re-raises) must return tracemalloc's traced memory to
  its baseline (a per-object leak of even a few bytes would show as hundreds of KB), and RSS
  must not grow beyond a tolerance;
* fds: /proc/self/fd has the same entries afterwards;
* references: weakrefs to user callbacks die after delete()/close(), and sys.getrefcount of a
  callback returns to its baseline after a handler is removed;
* an AioContext with armed timers, scheduled BHs and fd handlers whose callbacks reference the
  context, dropped WITHOUT close(), is collected by gc and its fds are released.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import time
import tracemalloc
import weakref

N = 100_000
TRACEMALLOC_TOLERANCE = 256 * 1024  # bytes, for 100,000 objects: < 3 bytes per object
RSS_TOLERANCE = 16 * 1024 * 1024
PAGE = os.sysconf("SC_PAGESIZE")

RESULTS: dict = {}


class Boom(Exception):
    pass


def _fds() -> set:
    return set(os.listdir("/proc/self/fd"))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _measure(name: str, body) -> None:
    """Run body(n) once to warm up, then N times under tracemalloc; check memory and fds."""
    body(N // 10)  # warm-up: free lists, interned strings, code caches
    gc.collect()
    fds0 = _fds()
    rss0 = _rss()
    tracemalloc.start()
    try:
        gc.collect()
        base, _ = tracemalloc.get_traced_memory()
        t0 = time.monotonic()
        body(N)
        elapsed = time.monotonic() - t0
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    gc.collect()
    rss1 = _rss()
    fds1 = _fds()
    RESULTS[name] = {"traced_delta": after - base, "peak": peak - base,
                     "rss_delta": rss1 - rss0, "seconds": round(elapsed, 2)}
    print(f"\n{name}: traced delta {after - base} B (peak +{peak - base} B), "
          f"RSS delta {(rss1 - rss0) // 1024} KiB, {elapsed:.2f} s for {N}")
    assert fds1 == fds0, f"{name}: fds leaked: {sorted(fds1 - fds0)}"
    assert after - base < TRACEMALLOC_TOLERANCE, (
        f"{name}: {after - base} bytes still allocated after {N} cycles")
    assert rss1 - rss0 < RSS_TOLERANCE, f"{name}: RSS grew by {rss1 - rss0} bytes"


def test_bh_cycles_return_memory(ctx, caplog):
    caplog.set_level(100, logger="qloop")
    ctx.set_exception_handler(None)  # the raising cycles measure poll()'s own error path
    ran = [0]

    def cb():
        ran[0] += 1

    def raiser():
        ran[0] += 1
        raise Boom("x")

    def body(n):
        for i in range(n):
            k = i % 4
            if k == 0:  # schedule, run, delete
                bh = ctx.bh_new(cb)
                bh.schedule()
                ctx.poll(False)
                bh.delete()
            elif k == 1:  # raising BH: poll re-raises
                bh = ctx.bh_new(raiser)
                bh.schedule()
                try:
                    ctx.poll(False)
                except Boom:
                    pass
                bh.delete()
            elif k == 2:  # oneshot, idle, cancel
                ctx.bh_schedule_oneshot(cb)
                bh = ctx.bh_new(cb)
                bh.schedule_idle()
                bh.cancel()
                ctx.poll(False)
            else:  # deleted while scheduled, then used: RuntimeError
                bh = ctx.bh_new(cb)
                bh.schedule()
                bh.delete()
                try:
                    bh.schedule()
                except RuntimeError:
                    pass
                ctx.poll(False)
        ctx.poll(False)

    ran[0] = 0
    _measure("bh", body)
    assert ran[0] >= N // 2  # the callbacks really ran (k == 0, 1, 2)


def test_timer_cycles_return_memory(ctx, qloop_module, caplog):
    caplog.set_level(100, logger="qloop")
    ctx.set_exception_handler(None)  # the raising cycles measure poll()'s own error path
    RT = qloop_module.ClockType.REALTIME
    ran = [0]

    def cb():
        ran[0] += 1

    def raiser():
        ran[0] += 1
        raise Boom("t")

    def body(n):
        for i in range(n):
            k = i % 4
            if k == 0:  # fires
                t = ctx.timer_new_ns(RT, cb)
                t.mod_ns(0)
                ctx.poll(False)
            elif k == 1:  # raises from poll
                t = ctx.timer_new_ms(RT, raiser)
                t.mod(0)
                try:
                    ctx.poll(False)
                except Boom:
                    pass
            elif k == 2:  # armed far away, re-armed, deleted
                t = ctx.timer_new_us(RT, cb)
                t.mod_ns(2**62)
                t.mod_anticipate_ns(2**61)
                t.delete()
            else:  # armed and dropped: kept alive by the context until it fires
                ctx.timer_new_ns(RT, cb).mod_ns(1)
                ctx.poll(False)

    ran[0] = 0
    _measure("timer", body)
    assert ran[0] >= N // 2


def test_fd_handler_cycles_return_memory(ctx, caplog):
    caplog.set_level(100, logger="qloop")
    ctx.set_exception_handler(None)  # the raising cycles measure poll()'s own error path
    pairs = []
    for _ in range(8):
        a, b = socket.socketpair()
        a.setblocking(False)
        pairs.append((a, b))
    ran = [0]

    def body(n):
        for i in range(n):
            a, b = pairs[i % 8]
            k = i % 5

            def rd(a=a):
                ran[0] += 1
                a.recv(4096)

            def bad(a=a):
                ran[0] += 1
                a.recv(4096)
                raise Boom("fd")

            if k == 0:  # add, fire, remove
                ctx.set_fd_handler(a, io_read=rd)
                b.send(b"x")
                ctx.poll(False)
                ctx.set_fd_handler(a, None)
            elif k == 1:  # raising handler
                ctx.set_fd_handler(a, io_read=bad)
                b.send(b"x")
                try:
                    ctx.poll(False)
                except Boom:
                    pass
                ctx.set_fd_handler(a.fileno(), None)
            elif k == 2:  # replace, with io_poll/io_poll_ready, then remove
                ctx.set_fd_handler(a, io_read=rd)
                ctx.set_fd_handler(a, io_read=rd, io_write=rd, io_poll=lambda: False,
                                   io_poll_ready=rd)
                ctx.set_fd_handler(a, None)
            elif k == 3:  # bad input paths
                try:
                    ctx.set_fd_handler(a, io_poll=rd)
                except ValueError:
                    pass
                try:
                    ctx.set_fd_poll(a, rd, rd)
                except ValueError:
                    pass
            elif i % 50 == 4:  # a fresh socketpair, registered then closed after removal
                c, d = socket.socketpair()
                ctx.set_fd_handler(c, io_read=rd)
                ctx.set_fd_handler(c, None)
                c.close()
                d.close()
            else:  # plain add / remove by fd number
                ctx.set_fd_handler(a.fileno(), io_write=rd)
                ctx.set_fd_handler(a.fileno(), None)

    try:
        ran[0] = 0
        _measure("fd", body)
        assert ran[0] >= N // 5
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_contexts_release_fds_and_memory(qloop_module):
    def body(n):
        for i in range(n // 100):  # 1,000 contexts (each owns an eventfd, maybe an epoll fd)
            c = qloop_module.AioContext(fdmon=("auto", "poll", "epoll")[i % 3])
            c.bh_new(lambda: None).schedule()
            c.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: None).mod_ns(2**62)
            c.poll(False)
            c.close()

    _measure("contexts", body)


class Callback:
    """A weakref-able callable."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1


def test_bh_drops_callback_after_delete(ctx):
    cb = Callback()
    ref = weakref.ref(cb)
    bh = ctx.bh_new(cb)
    bh.schedule()
    bh.delete()  # deleted while scheduled: freed by the next poll
    ctx.poll(False)
    del cb
    gc.collect()
    assert cb_dead(ref), "a deleted BH still references its callback"
    del bh


def cb_dead(ref) -> bool:
    return ref() is None


def test_oneshot_drops_callback_after_running(ctx):
    cb = Callback()
    ref = weakref.ref(cb)
    ctx.bh_schedule_oneshot(cb)
    del cb
    assert ref() is not None  # kept alive while scheduled
    ctx.poll(False)
    gc.collect()
    assert ref() is None, "a oneshot that ran still references its callback"


def test_timer_drops_callback(ctx, qloop_module, request):
    cb = Callback()
    ref = weakref.ref(cb)
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, cb)
    t.mod_ns(2**62)
    del cb, t  # an armed timer is kept alive by the context
    gc.collect()
    assert ref() is not None
    ctx.close()
    gc.collect()
    assert ref() is None, "close() kept the callback of an armed timer"


def test_close_drops_every_callback(make_ctx, qloop_module, sockpair, request):
    c = make_ctx()
    a, _b = sockpair()
    cbs = [Callback() for _ in range(6)]
    refs = [weakref.ref(x) for x in cbs]
    c.bh_new(cbs[0]).schedule()
    c.bh_new(cbs[1]).schedule_idle()
    c.bh_schedule_oneshot(cbs[2])
    c.timer_new_ms(qloop_module.ClockType.REALTIME, cbs[3]).mod(2**40)
    c.set_fd_handler(a, io_read=cbs[4], io_write=cbs[5])
    c.set_exception_handler(None)
    del cbs
    gc.collect()
    assert all(r() is not None for r in refs)
    c.close()
    gc.collect()
    assert [r() is None for r in refs] == [True] * 6


def test_refcount_returns_to_baseline(ctx, sockpair, qloop_module, request):
    a, _b = sockpair()
    cb = Callback()
    base = sys.getrefcount(cb)
    for _ in range(1000):
        ctx.set_fd_handler(a, io_read=cb, io_write=cb, io_poll=cb, io_poll_ready=cb)
        ctx.set_fd_poll(a, cb, cb)
        ctx.set_fd_handler(a, None)
        bh = ctx.bh_new(cb)
        bh.schedule()
        bh.delete()
        t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, cb)
        t.mod_ns(2**62)
        t.delete()
        try:
            ctx.set_fd_handler(a, io_poll=cb)  # ValueError path
        except ValueError:
            pass
    ctx.poll(False)
    del bh, t
    gc.collect()
    assert sys.getrefcount(cb) == base


def test_unclosed_context_is_collected(qloop_module, sockpair):
    RT = qloop_module.ClockType.REALTIME
    fds0 = _fds()
    a, b = sockpair()
    fds_with_sockets = _fds()
    refs = []
    for fdmon in ("poll", "epoll", "auto"):
        c = qloop_module.AioContext(fdmon=fdmon)
        # callbacks that reference the context: reference cycles through the loop
        c.timer_new_ns(RT, lambda c=c: c.notify()).mod_ns(2**62)
        c.timer_new_ns(qloop_module.ClockType.VIRTUAL, lambda c=c: c.poll(False)).mod_ns(2**62)
        bh = c.bh_new(lambda c=c: c.notify())
        bh.schedule()
        c.bh_new(lambda c=c: c.notify()).schedule_idle()
        c.bh_schedule_oneshot(lambda c=c: c.notify())
        c.set_fd_handler(a, io_read=lambda c=c: c.notify())
        c.set_exception_handler(lambda ctx, exc, c=c: None)
        refs.append(weakref.ref(c))
        del c, bh
    assert _fds() != fds_with_sockets  # the contexts own fds now
    gc.collect()
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert not alive, f"{len(alive)} dropped AioContext(s) not collected"
    assert _fds() == fds_with_sockets, "a collected AioContext kept its fds"
    a.close()
    b.close()
    assert _fds() == fds0
