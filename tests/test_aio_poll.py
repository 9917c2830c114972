"""aio_poll (docs/aio-context.md, docs/notify.md): fresh context, progress rules, step order,
blocking."""

from __future__ import annotations

import gc
import os

import pytest

from conftest import skip_without_io_uring

HOUR_NS = 3_600 * 10**9


# -- fresh context -----------------------------------------------------------------


@pytest.mark.parametrize("fdmon", ["auto", "poll", "epoll", "io_uring"])
def test_fresh_context_first_nonblocking_poll_is_false(qloop_module, fdmon):
    """A fresh context starts notified (registering its own notifier notifies it);
    poll(False) consumes that without progress."""
    if fdmon == "io_uring":
        skip_without_io_uring(qloop_module)
    with qloop_module.AioContext(fdmon=fdmon) as ctx:
        assert ctx.poll(False) is False
        assert ctx.poll(False) is False


def test_fresh_context_blocking_poll_does_not_block(qloop_module):
    with qloop_module.AioContext() as ctx:
        # Arming the watchdog notifies as well; the point is: no progress, no block.
        rt = qloop_module.ClockType.REALTIME
        fired = []
        t = ctx.timer_new_ns(rt, lambda: fired.append(1))
        t.mod_ns(qloop_module.clock_get_ns(rt) + 5 * 10**9)
        assert ctx.poll(True) is False
        assert fired == []
        t.delete()


def test_fresh_context_compute_timeout_infinite(ctx):
    assert ctx.compute_timeout() == -1


# -- notify ------------------------------------------------------------------------


def test_notify_is_not_progress(ctx):
    ctx.notify()
    assert ctx.poll(False) is False
    ctx.notify()
    ctx.notify()
    assert ctx.poll(False) is False


def test_blocking_poll_after_notify_returns_false_at_once(ctx, watchdog):
    dog = watchdog(ctx, 5.0)
    assert ctx.poll(False) is False  # consume the watchdog's arming notify
    ctx.notify()
    assert ctx.poll(True) is False
    assert not dog.fired


def test_notify_during_processing_survives_to_next_poll(ctx, watchdog):
    """aio_notify_accept runs before BHs, so a notify from a callback is kept
    (docs/notify.md)."""
    dog = watchdog(ctx, 5.0)
    assert ctx.poll(False) is False
    bh = ctx.bh_new(ctx.notify)
    bh.schedule()
    assert ctx.poll(False) is True
    assert ctx.poll(True) is False  # must not block: the notify is still pending
    assert not dog.fired
    bh.delete()


def test_fd_registration_notifies(ctx, watchdog, sockpair):
    """Adding a handler calls aio_notify (a blocking poll returns at once)."""
    a, _ = sockpair()
    dog = watchdog(ctx, 5.0)
    assert ctx.poll(False) is False
    ctx.set_fd_handler(a, io_read=lambda: None)
    assert ctx.poll(True) is False
    assert not dog.fired
    ctx.set_fd_handler(a)


def test_removing_unregistered_fd_does_not_notify(ctx, qloop_module, sockpair):
    """Removing a handler that does not exist returns without aio_notify."""
    a, _ = sockpair()
    rt = qloop_module.ClockType.REALTIME
    fired = []
    t = ctx.timer_new_ns(rt, lambda: fired.append(qloop_module.clock_get_ns(rt)))
    deadline = qloop_module.clock_get_ns(rt) + 50_000_000
    t.mod_ns(deadline)
    assert ctx.poll(False) is False  # consume the timer's notify
    ctx.set_fd_handler(a)  # nothing registered: no notify
    assert ctx.poll(True) is True  # slept until the timer
    assert len(fired) == 1 and fired[0] >= deadline


def test_timer_becoming_head_notifies(ctx, qloop_module):
    """Arming a timer that becomes the head of its list notifies the context."""
    rt = qloop_module.ClockType.REALTIME
    fired = []
    far = ctx.timer_new_ns(rt, lambda: fired.append("far"))
    far.mod_ns(qloop_module.clock_get_ns(rt) + HOUR_NS)
    assert ctx.poll(False) is False
    near = ctx.timer_new_ns(rt, lambda: fired.append("near"))
    near.mod_ns(qloop_module.clock_get_ns(rt) + 30 * 60 * 10**9)  # becomes head
    assert ctx.poll(True) is False  # woke by the notify, nothing ran
    assert fired == []
    far.delete()
    near.delete()


def test_timer_not_becoming_head_does_not_notify(ctx, qloop_module):
    rt = qloop_module.ClockType.REALTIME
    fired = []
    head = ctx.timer_new_ns(rt, lambda: fired.append("head"))
    deadline = qloop_module.clock_get_ns(rt) + 50_000_000
    head.mod_ns(deadline)
    assert ctx.poll(False) is False
    later = ctx.timer_new_ns(rt, lambda: fired.append("later"))
    later.mod_ns(qloop_module.clock_get_ns(rt) + HOUR_NS)  # not the head: no notify
    assert ctx.poll(True) is True
    assert fired == ["head"]
    assert qloop_module.clock_get_ns(rt) >= deadline
    later.delete()


# -- progress rules (docs/aio-context.md, "Progress") ----------------------------------


def test_progress_bh(ctx):
    ctx.bh_schedule_oneshot(lambda: None)
    assert ctx.poll(False) is True


def test_progress_io_read(ctx, sockpair):
    a, b = sockpair()
    ctx.set_fd_handler(a, io_read=lambda: a.recv(10))
    b.send(b"x")
    assert ctx.poll(False) is True
    assert ctx.poll(False) is False
    ctx.set_fd_handler(a)


def test_progress_io_write(ctx, sockpair):
    a, _ = sockpair()
    ctx.set_fd_handler(a, io_write=lambda: None)
    assert ctx.poll(False) is True
    ctx.set_fd_handler(a)


def test_progress_timer(ctx, qloop_module):
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: None)
    t.mod_ns(0)
    assert ctx.poll(False) is True
    assert ctx.poll(False) is False


def test_no_progress_without_work(ctx):
    for _ in range(3):
        assert ctx.poll(False) is False


def test_no_progress_for_cancelled_deleted_idle(ctx):
    a = ctx.bh_new(lambda: None)
    b = ctx.bh_new(lambda: None)
    c = ctx.bh_new(lambda: None)
    a.schedule()
    a.cancel()
    b.schedule()
    b.delete()
    c.schedule_idle()
    assert ctx.poll(False) is False
    c.delete()


# -- step order (docs/aio-context.md, "One iteration") --------------------------------


@pytest.mark.parametrize("fdmon", ["poll", "epoll", "io_uring"])
def test_step_order_bh_then_fd_then_timer(make_ctx, qloop_module, sockpair, fdmon):
    ctx = make_ctx(fdmon=fdmon)
    order = []
    a, b = sockpair()
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: order.append("timer"))
    t.mod_ns(0)
    ctx.set_fd_handler(a, io_read=lambda: (order.append("fd"), a.recv(10)))
    b.send(b"x")
    ctx.bh_schedule_oneshot(lambda: order.append("bh"))
    assert ctx.poll(False) is True
    assert order == ["bh", "fd", "timer"]
    assert ctx.poll(False) is False
    ctx.set_fd_handler(a)


def test_bh_scheduled_by_fd_handler_runs_next_poll(ctx, qloop_module, sockpair):
    order = []
    a, b = sockpair()
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: order.append("timer"))
    t.mod_ns(0)

    def io_read():
        a.recv(10)
        order.append("fd")
        ctx.bh_schedule_oneshot(lambda: order.append("bh"))

    ctx.set_fd_handler(a, io_read=io_read)
    b.send(b"x")
    assert ctx.poll(False) is True
    assert order == ["fd", "timer"]
    assert ctx.poll(False) is True
    assert order == ["fd", "timer", "bh"]
    ctx.set_fd_handler(a)


def test_bh_scheduled_by_timer_runs_next_poll(ctx, qloop_module):
    order = []

    def tcb():
        order.append("timer")
        ctx.bh_schedule_oneshot(lambda: order.append("bh"))

    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, tcb)
    t.mod_ns(0)
    assert ctx.poll(False) is True
    assert order == ["timer"]
    assert ctx.poll(False) is True
    assert order == ["timer", "bh"]


# -- blocking ------------------------------------------------------------------------


def test_blocking_poll_with_only_a_timer(ctx, qloop_module):
    rt = qloop_module.ClockType.REALTIME
    ran_at = []
    t = ctx.timer_new_ns(rt, lambda: ran_at.append(qloop_module.clock_get_ns(rt)))
    deadline = qloop_module.clock_get_ns(rt) + 50_000_000
    t.mod_ns(deadline)
    assert ctx.poll(False) is False  # consume the arming notify
    assert ran_at == []
    result = ctx.poll(True)
    while not ran_at:  # a spurious False is allowed (docs/aio-context.md); bounded by the timer
        assert result is False
        result = ctx.poll(True)
    assert result is True
    assert ran_at[0] >= deadline
    assert qloop_module.clock_get_ns(rt) >= deadline


def test_blocking_poll_with_pending_bh_does_not_block(ctx, watchdog):
    dog = watchdog(ctx, 5.0)
    ctx.poll(False)
    ctx.bh_schedule_oneshot(lambda: None)
    assert ctx.poll(True) is True
    assert not dog.fired


def test_compute_timeout_bh_and_timer(ctx, qloop_module):
    rt = qloop_module.ClockType.REALTIME
    t = ctx.timer_new_ns(rt, lambda: None)
    t.mod_ns(qloop_module.clock_get_ns(rt) + 10**9)
    ct = ctx.compute_timeout()
    assert 0 < ct <= 10**9
    ctx.bh_schedule_oneshot(lambda: None)
    assert ctx.compute_timeout() == 0
    ctx.poll(False)
    t.delete()
    assert ctx.compute_timeout() == -1


def test_nested_poll_from_bh_is_allowed(ctx):
    results = []
    inner = ctx.bh_new(lambda: results.append("inner"))

    def outer():
        inner.schedule()
        results.append(ctx.poll(False))

    ctx.bh_new(outer).schedule()
    assert ctx.poll(False) is True
    assert results == ["inner", True]


def test_nested_poll_from_fd_handler_is_allowed(ctx, sockpair):
    a, b = sockpair()
    results = []

    def io_read():
        a.recv(10)
        ctx.bh_schedule_oneshot(lambda: results.append("bh"))
        results.append(ctx.poll(False))

    ctx.set_fd_handler(a, io_read=io_read)
    b.send(b"x")
    assert ctx.poll(False) is True
    assert results == ["bh", True]
    ctx.set_fd_handler(a)


# -- close -----------------------------------------------------------------------------


def test_close_drops_pending_work_without_calling(qloop_module, sockpair):
    a, b = sockpair()
    calls = []
    ctx = qloop_module.AioContext()
    ctx.poll(False)
    ctx.bh_new(lambda: calls.append("bh")).schedule()
    ctx.bh_schedule_oneshot(lambda: calls.append("oneshot"))
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: calls.append("timer"))
    t.mod_ns(0)
    ctx.set_fd_handler(a, io_read=lambda: calls.append("fd"))
    b.send(b"x")
    ctx.close()
    gc.collect()
    assert calls == []
    # The user's fd is not closed by the context.
    os.fstat(a.fileno())
    assert a.recv(10) == b"x"


def test_context_manager(qloop_module):
    with qloop_module.AioContext() as ctx:
        assert ctx.poll(False) is False
    with pytest.raises(RuntimeError):
        ctx.poll(False)


def test_pending_timer_kept_alive_by_context(ctx, qloop_module):
    n = []
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: n.append(1))
    t.mod_ns(0)
    del t
    gc.collect()
    assert ctx.poll(False) is True
    assert n == [1]
