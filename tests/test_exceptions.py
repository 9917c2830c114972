"""Raising callbacks (decisions.md "Errors"): the iteration finishes, the first exception
propagates from poll(), later ones are logged on the "qloop" logger, the context stays
usable; or, with set_exception_handler, handler(ctx, exc) receives every exception.

The ``ctx`` fixture records every callback exception (conftest.py ``ContextChecks``):
``ctx_checks.expect_errors`` declares the ones each test provokes."""

from __future__ import annotations

import sys

import pytest


class Boom(Exception):
    pass


def boom(msg="boom"):
    raise Boom(msg)


@pytest.fixture
def unraisable(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u))
    return seen


def test_raising_bh_other_bhs_still_run(ctx, ctx_checks):
    ctx_checks.expect_errors(Boom)
    ran = []
    ctx.bh_new(lambda: ran.append("a")).schedule()
    ctx.bh_new(boom).schedule()
    ctx.bh_new(lambda: ran.append("c")).schedule()
    with pytest.raises(Boom):
        ctx.poll(False)
    assert ran == ["c", "a"]
    assert ctx.poll(False) is False


def test_raising_callback_does_not_lose_fd_and_timer_events(ctx, qloop_module, sockpair, ctx_checks):
    ctx_checks.expect_errors(Boom)
    a, b = sockpair()
    ran = []
    ctx.set_fd_handler(a, io_read=lambda: ran.append(("fd", a.recv(10))))
    b.send(b"x")
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: ran.append(("timer", None)))
    t.mod_ns(0)
    ctx.bh_schedule_oneshot(boom)
    with pytest.raises(Boom):
        ctx.poll(False)
    assert ran == [("fd", b"x"), ("timer", None)]
    assert ctx.poll(False) is False
    ctx.set_fd_handler(a)


@pytest.mark.parametrize("where", ["fd", "timer"])
def test_raising_fd_or_timer_callback(ctx, qloop_module, sockpair, where, ctx_checks):
    ctx_checks.expect_errors(Boom)
    a, b = sockpair()
    ran = []
    if where == "fd":
        ctx.set_fd_handler(a, io_read=lambda: (a.recv(10), boom()))
        b.send(b"x")
    else:
        t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, boom)
        t.mod_ns(0)
    ctx.bh_schedule_oneshot(lambda: ran.append("bh"))
    with pytest.raises(Boom):
        ctx.poll(False)
    assert ran == ["bh"]
    assert ctx.poll(False) is False
    ctx.set_fd_handler(a)


def test_first_exception_propagates_rest_are_logged(ctx, qloop_module, caplog, ctx_checks):
    """decisions.md: the first exception is raised, later ones go to the "qloop" logger."""
    ctx_checks.expect_errors(Boom, KeyError, Boom)
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: boom("timer"))
    t.mod_ns(0)
    ctx.bh_new(lambda: (_ for _ in ()).throw(KeyError("second bh"))).schedule()
    ctx.bh_new(lambda: boom("first bh")).schedule()  # LIFO: runs first
    with caplog.at_level("ERROR", logger="qloop"), pytest.raises(Boom, match="first bh"):
        ctx.poll(False)
    got = [r.exc_info[1] for r in caplog.records if r.name == "qloop" and r.exc_info]
    assert len(got) == 2
    assert isinstance(got[0], KeyError)
    assert isinstance(got[1], Boom) and str(got[1]) == "timer"


def test_context_usable_after_exception(ctx, qloop_module, ctx_checks):
    ctx_checks.expect_errors(Boom)
    n = []
    bh = ctx.bh_new(lambda: n.append(1) if len(n) else (n.append(0), boom()))
    bh.schedule()
    with pytest.raises(Boom):
        ctx.poll(False)
    bh.schedule()
    assert ctx.poll(False) is True
    assert n == [0, 1]
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: n.append(2))
    t.mod_ns(0)
    assert ctx.poll(False) is True
    assert n == [0, 1, 2]
    assert ctx.poll(False) is False


def test_raising_timer_is_no_longer_pending(ctx, qloop_module, ctx_checks):
    ctx_checks.expect_errors(Boom)
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, boom)
    t.mod_ns(0)
    with pytest.raises(Boom):
        ctx.poll(False)
    assert t.pending is False
    assert ctx.poll(False) is False


def test_raising_oneshot_runs_once(ctx, ctx_checks):
    ctx_checks.expect_errors(Boom)
    n = []

    def cb():
        n.append(1)
        boom()

    ctx.bh_schedule_oneshot(cb)
    with pytest.raises(Boom):
        ctx.poll(False)
    assert ctx.poll(False) is False
    assert n == [1]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_also_finish_the_iteration(ctx, exc_type):
    ran = []
    ctx.bh_new(lambda: ran.append("a")).schedule()

    def raiser():
        raise exc_type()

    ctx.bh_new(raiser).schedule()
    with pytest.raises(exc_type):
        ctx.poll(False)
    assert ran == ["a"]
    assert ctx.poll(False) is False


def test_exception_in_blocking_poll(ctx, watchdog, ctx_checks):
    ctx_checks.expect_errors(Boom)
    watchdog(ctx, 5.0)
    ctx.poll(False)
    ctx.bh_schedule_oneshot(boom)
    with pytest.raises(Boom):
        ctx.poll(True)


def test_exception_from_nested_poll_reaches_outer_callback(ctx, ctx_checks):
    ctx_checks.expect_errors(Boom)
    caught = []

    def outer():
        ctx.bh_schedule_oneshot(boom)
        try:
            ctx.poll(False)
        except Boom as exc:
            caught.append(exc)

    ctx.bh_schedule_oneshot(outer)
    assert ctx.poll(False) is True
    assert len(caught) == 1


# -- exception handler ---------------------------------------------------------------


def test_exception_handler_receives_every_exception(ctx, qloop_module, unraisable):
    got = []
    ctx.set_exception_handler(lambda c, exc: got.append((c, exc)))
    ran = []
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: boom("timer"))
    t.mod_ns(0)
    ctx.bh_new(lambda: ran.append("ok")).schedule()
    ctx.bh_new(lambda: boom("bh")).schedule()
    assert ctx.poll(False) is True  # returns normally
    assert ran == ["ok"]
    assert [str(e) for _, e in got] == ["bh", "timer"]
    assert all(c is ctx for c, _ in got)
    assert unraisable == []


def test_exception_handler_reset_to_none(ctx):
    got = []
    ctx.set_exception_handler(lambda c, exc: got.append(exc))
    ctx.bh_schedule_oneshot(boom)
    ctx.poll(False)
    assert len(got) == 1
    ctx.set_exception_handler(None)
    ctx.bh_schedule_oneshot(boom)
    with pytest.raises(Boom):
        ctx.poll(False)
    assert len(got) == 1


def test_base_exceptions_bypass_the_exception_handler(ctx):
    """decisions.md: the handler receives Exceptions; a KeyboardInterrupt still completes the
    iteration and is then raised from poll()."""
    got = []
    ran = []
    ctx.set_exception_handler(lambda c, exc: got.append(exc))

    def raiser():
        raise KeyboardInterrupt()

    ctx.bh_schedule_oneshot(lambda: ran.append("after"))
    ctx.bh_schedule_oneshot(raiser)  # LIFO: runs first
    with pytest.raises(KeyboardInterrupt):
        ctx.poll(False)
    assert got == []
    assert ran == ["after"]  # the rest of the iteration still ran


def test_exception_handler_must_be_callable(ctx):
    with pytest.raises(TypeError):
        ctx.set_exception_handler(42)


def test_raising_io_poll_during_busy_polling(make_ctx, qloop_module, watchdog, ctx_checks):
    ctx_checks.expect_errors(Boom)
    ctx = make_ctx(fdmon="poll")
    ctx.set_poll_params(50_000_000, 2, 2)
    dog = watchdog(ctx, 5.0)
    e = qloop_module.EventNotifier()
    state = {"raise": False, "reads": 0}

    def io_poll(n):
        if state["raise"]:
            state["raise"] = False
            boom("io_poll")
        return False

    def io_read(n):
        n.test_and_clear()
        state["reads"] += 1

    try:
        ctx.set_event_notifier(e, io_read, io_poll, lambda n: None)
        ctx.poll(False)
        e.set()
        assert ctx.poll(True) is True  # fires once: joins the poll list
        state["raise"] = True
        e.set()  # so the blocking poll that follows the busy polling does not sleep
        with pytest.raises(Boom, match="io_poll"):
            for _ in range(5):
                ctx.poll(True)
        # Still usable.
        e.set()
        for _ in range(5):
            if state["reads"] >= 2:
                break
            ctx.poll(True)
        assert state["reads"] >= 2
        assert not dog.fired
    finally:
        ctx.set_event_notifier(e, None)
        e.close()


def test_raising_timer_during_advance_virtual_time(ctx, qloop_module, ctx_checks):
    ctx_checks.expect_errors(Boom)
    V = qloop_module.ClockType.VIRTUAL
    qloop_module.clock_set_manual(True)
    qloop_module.clock_enable(V, True)
    v0 = qloop_module.clock_get_ns(V)
    ran = []
    t1 = ctx.timer_new_ns(V, lambda: boom("t1"))
    t2 = ctx.timer_new_ns(V, lambda: ran.append(qloop_module.clock_get_ns(V) - v0))
    t1.mod_ns(v0 + 100)
    t2.mod_ns(v0 + 200)
    with pytest.raises(Boom, match="t1"):
        qloop_module.clock_advance_virtual_time(v0 + 1_000)
    assert ran == [200]
    assert qloop_module.clock_get_ns(V) == v0 + 1_000
    assert not t1.pending and not t2.pending
