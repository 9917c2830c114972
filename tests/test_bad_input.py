"""Bad input (decisions.md "Errors"): clear exceptions, no crash/hang."""

from __future__ import annotations

import errno
import os
import socket
import threading

import pytest


async def async_cb(*args):  # a callback of the wrong kind
    return None


@pytest.fixture
def closed_fd():
    """A file descriptor number that is not open."""
    r, w = os.pipe()
    os.close(w)
    os.close(r)
    return r


# -- construction --------------------------------------------------------------------


def test_bh_not_constructible(qloop_module):
    with pytest.raises(TypeError):
        qloop_module.BH()
    with pytest.raises(TypeError):
        qloop_module.BH(lambda: None)


def test_timer_not_constructible(qloop_module):
    with pytest.raises(TypeError):
        qloop_module.Timer()
    with pytest.raises(TypeError):
        qloop_module.Timer(0, 1, lambda: None)


def test_unknown_fdmon(qloop_module):
    with pytest.raises(ValueError):
        qloop_module.AioContext(fdmon="io_uring_please")


# -- fd arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["3", 3.0, None, b"3", [3], object()], ids=repr)
def test_fd_of_wrong_type(ctx, bad):
    with pytest.raises(TypeError):
        ctx.set_fd_handler(bad, io_read=lambda: None)


@pytest.mark.parametrize("bad", [True, False])
def test_fd_bool_is_rejected(ctx, bad):
    with pytest.raises(TypeError):
        ctx.set_fd_handler(bad, io_read=lambda: None)


@pytest.mark.parametrize("bad", [-1, -42])
def test_negative_fd(ctx, bad):
    with pytest.raises(ValueError):
        ctx.set_fd_handler(bad, io_read=lambda: None)


def test_closed_fd_is_ebadf_naming_fd(ctx, closed_fd):
    with pytest.raises(OSError) as info:
        ctx.set_fd_handler(closed_fd, io_read=lambda: None)
    assert info.value.errno == errno.EBADF
    assert str(closed_fd) in str(info.value)
    assert ctx.poll(False) is False  # nothing was registered


def test_closed_socket_object(ctx):
    s = socket.socket()
    s.close()  # fileno() now returns -1
    with pytest.raises(ValueError, match="closed socket") as info:
        ctx.set_fd_handler(s, io_read=lambda: None)
    assert "negative" not in str(info.value)
    assert ctx.poll(False) is False  # nothing was registered


def test_fileno_exception_propagates(ctx):
    class Custom(Exception):
        pass

    class Bad:
        def fileno(self):
            raise Custom("no fd today")

    with pytest.raises(Custom):
        ctx.set_fd_handler(Bad(), io_read=lambda: None)


def test_object_with_fileno_accepted(ctx, sockpair):
    """An object with fileno() registers, dispatches and is removed like its fd number."""
    a, b = sockpair()

    class Wrapper:
        def fileno(self):
            return a.fileno()

    got = []
    ctx.set_fd_handler(Wrapper(), io_read=lambda: got.append(a.recv(10)))
    assert ctx.resource_counts() == (0, 0, 1)
    b.send(b"ping")
    assert ctx.poll(False) is True
    assert got == [b"ping"]
    ctx.set_fd_handler(Wrapper())  # a different wrapper object: the same fd is removed
    assert ctx.resource_counts() == (0, 0, 0)
    b.send(b"pong")
    assert ctx.poll(False) is False
    assert got == [b"ping"]


@pytest.mark.parametrize("bad", ["3", 3.0, None, object()], ids=repr)
def test_set_fd_poll_bad_fd_type(ctx, bad):
    with pytest.raises(TypeError):
        ctx.set_fd_poll(bad, io_poll_begin=lambda *a: None)


def test_set_fd_poll_negative_fd(ctx):
    with pytest.raises(ValueError):
        ctx.set_fd_poll(-1, io_poll_begin=lambda *a: None)


def test_set_event_notifier_requires_notifier(ctx):
    with pytest.raises(TypeError):
        ctx.set_event_notifier(5, lambda n: None)


# -- callbacks -------------------------------------------------------------------------


@pytest.mark.parametrize("arg", ["io_read", "io_write", "io_poll", "io_poll_ready"])
def test_fd_handler_callback_not_callable(ctx, sockpair, arg):
    a, _ = sockpair()
    kwargs = {"io_read": lambda: None, "io_poll": lambda: False, "io_poll_ready": lambda: None}
    kwargs[arg] = 42
    with pytest.raises(TypeError, match=arg):
        ctx.set_fd_handler(a, **kwargs)
    assert ctx.poll(False) is False


@pytest.mark.parametrize("arg", ["io_read", "io_write"])
def test_fd_handler_async_callback_rejected(ctx, sockpair, arg):
    a, _ = sockpair()
    with pytest.raises(TypeError, match=arg):
        ctx.set_fd_handler(a, **{arg: async_cb})


@pytest.mark.parametrize("arg", ["io_read", "io_poll", "io_poll_ready"])
def test_event_notifier_callback_not_callable(ctx, qloop_module, arg):
    kwargs = {"io_read": lambda n: None, "io_poll": lambda n: False, "io_poll_ready": lambda n: None}
    kwargs[arg] = "nope"
    with qloop_module.EventNotifier() as e, pytest.raises(TypeError, match=arg):
        ctx.set_event_notifier(e, **kwargs)


def test_event_notifier_async_callback_rejected(ctx, qloop_module):
    with qloop_module.EventNotifier() as e, pytest.raises(TypeError, match="io_read"):
        ctx.set_event_notifier(e, async_cb)


@pytest.mark.parametrize("arg", ["io_poll_begin", "io_poll_end"])
def test_set_fd_poll_callback_not_callable(ctx, sockpair, arg):
    a, _ = sockpair()
    ctx.set_fd_handler(a, io_read=lambda: None)
    with pytest.raises(TypeError, match=arg):
        ctx.set_fd_poll(a, **{arg: 1})
    ctx.set_fd_handler(a)


@pytest.mark.parametrize("bad", [None, 1, "cb"], ids=repr)
def test_bh_new_callback_not_callable(ctx, bad):
    with pytest.raises(TypeError, match="callback"):
        ctx.bh_new(bad)


def test_bh_new_async_rejected(ctx):
    with pytest.raises(TypeError, match="callback"):
        ctx.bh_new(async_cb)


@pytest.mark.parametrize("bad", [None, 1, async_cb], ids=["None", "int", "async"])
def test_oneshot_callback_rejected(ctx, bad):
    with pytest.raises(TypeError, match="callback"):
        ctx.bh_schedule_oneshot(bad)
    assert ctx.poll(False) is False


@pytest.mark.parametrize("factory", ["timer_new_ns", "timer_new_us", "timer_new_ms"])
@pytest.mark.parametrize("bad", [None, 1, async_cb], ids=["None", "int", "async"])
def test_timer_callback_rejected(ctx, qloop_module, factory, bad):
    with pytest.raises(TypeError, match="callback"):
        getattr(ctx, factory)(qloop_module.ClockType.REALTIME, bad)


def test_timer_new_callback_rejected(ctx, qloop_module):
    with pytest.raises(TypeError, match="callback"):
        ctx.timer_new(qloop_module.ClockType.REALTIME, 1, 5)


def test_notifier_list_add_not_callable(qloop_module):
    nl = qloop_module.NotifierList()
    with pytest.raises(TypeError):
        nl.add(5)
    with pytest.raises(TypeError):
        nl.add(async_cb)


# -- clocks and scales ---------------------------------------------------------------


@pytest.mark.parametrize("clock", [4, 7, -1, 99])
def test_unknown_clock_named(qloop_module, ctx, clock):
    for call in (
        lambda: qloop_module.clock_get_ns(clock),
        lambda: qloop_module.clock_get_us(clock),
        lambda: qloop_module.clock_get_ms(clock),
        lambda: qloop_module.clock_is_enabled(clock),
        lambda: qloop_module.clock_enable(clock, True),
        lambda: ctx.timer_new_ns(clock, lambda: None),
        lambda: ctx.timer_new(clock, 1, lambda: None),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert str(clock) in str(info.value)


@pytest.mark.parametrize("scale", [0, -1, -1_000])
def test_non_positive_scale(ctx, qloop_module, scale):
    with pytest.raises(ValueError):
        ctx.timer_new(qloop_module.ClockType.REALTIME, scale, lambda: None)


@pytest.mark.parametrize("scale", [1.5, "1000", None], ids=repr)
def test_non_int_scale(ctx, qloop_module, scale):
    with pytest.raises((TypeError, ValueError)):
        ctx.timer_new(qloop_module.ClockType.REALTIME, scale, lambda: None)


# -- poll() ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["yes", None, 1.0, [], object()], ids=repr)
def test_poll_blocking_must_be_bool_or_int(ctx, bad):
    with pytest.raises(TypeError):
        ctx.poll(bad)


def test_poll_accepts_int(ctx):
    assert ctx.poll(0) is False
    ctx.bh_schedule_oneshot(lambda: None)
    assert ctx.poll(1) is True


def test_poll_from_other_thread_while_polling(ctx, threads):
    """decisions.md: poll() from a thread other than the one currently polling."""
    inside = threading.Event()
    attempted = threading.Event()
    outcome = []

    def other():
        assert inside.wait(5)
        try:
            ctx.poll(False)
            outcome.append("no error")
        except RuntimeError:
            outcome.append("RuntimeError")
        finally:
            attempted.set()

    def cb():
        inside.set()
        attempted.wait(5)

    ctx.bh_schedule_oneshot(cb)
    threads.start(other)
    assert ctx.poll(False) is True
    threads.join_all()
    assert outcome == ["RuntimeError"]
    # Once the owner is not polling, another thread may poll.
    threads.start(lambda: outcome.append(ctx.poll(False)))
    threads.join_all()
    assert outcome == ["RuntimeError", False]


def test_close_from_callback_raises(ctx):
    caught = []

    def cb():
        try:
            ctx.close()
        except RuntimeError:
            caught.append("RuntimeError")

    ctx.bh_schedule_oneshot(cb)
    assert ctx.poll(False) is True
    assert caught == ["RuntimeError"]
    # Still usable.
    ctx.bh_schedule_oneshot(lambda: caught.append("again"))
    assert ctx.poll(False) is True
    assert caught == ["RuntimeError", "again"]


# -- closed / deleted objects --------------------------------------------------------


def closed_ctx_calls(qloop_module, ctx, sock):
    rt = qloop_module.ClockType.REALTIME
    e = qloop_module.EventNotifier()
    return {
        "poll(False)": lambda: ctx.poll(False),
        "poll(True)": lambda: ctx.poll(True),
        "notify": ctx.notify,
        "compute_timeout": ctx.compute_timeout,
        "bh_new": lambda: ctx.bh_new(lambda: None),
        "bh_schedule_oneshot": lambda: ctx.bh_schedule_oneshot(lambda: None),
        "timer_new": lambda: ctx.timer_new(rt, 1, lambda: None),
        "timer_new_ns": lambda: ctx.timer_new_ns(rt, lambda: None),
        "timer_new_us": lambda: ctx.timer_new_us(rt, lambda: None),
        "timer_new_ms": lambda: ctx.timer_new_ms(rt, lambda: None),
        "set_fd_handler": lambda: ctx.set_fd_handler(sock, io_read=lambda: None),
        "set_fd_poll": lambda: ctx.set_fd_poll(sock, io_poll_begin=lambda *a: None),
        "set_event_notifier": lambda: ctx.set_event_notifier(e, lambda n: None),
        "set_poll_params": lambda: ctx.set_poll_params(1000, 2, 2),
    }, e


def test_closed_context_raises_runtime_error(qloop_module, sockpair):
    a, _ = sockpair()
    ctx = qloop_module.AioContext()
    ctx.close()
    calls, e = closed_ctx_calls(qloop_module, ctx, a)
    not_raising = []
    try:
        for name, call in calls.items():
            try:
                call()
            except RuntimeError:
                continue
            not_raising.append(name)
    finally:
        e.close()
    assert not_raising == []


def test_closed_context_manager_raises_runtime_error(qloop_module):
    with qloop_module.AioContext() as ctx:
        pass
    with pytest.raises(RuntimeError):
        ctx.poll(False)
    with pytest.raises(RuntimeError):
        ctx.bh_new(lambda: None)


def test_closed_event_notifier_raises(qloop_module):
    e = qloop_module.EventNotifier()
    e.close()
    for call in (e.set, e.test_and_clear, e.fileno):
        with pytest.raises(RuntimeError):
            call()


def test_registering_closed_event_notifier(ctx, qloop_module):
    e = qloop_module.EventNotifier()
    e.close()
    with pytest.raises(RuntimeError):
        ctx.set_event_notifier(e, lambda n: None)


def test_deleted_bh_raises(ctx):
    bh = ctx.bh_new(lambda: None)
    bh.delete()
    for call in (bh.schedule, bh.schedule_idle, bh.cancel, bh.delete):
        with pytest.raises(RuntimeError):
            call()
    assert ctx.poll(False) is False


# -- fd closed while registered --------------------------------------------------------


def test_fd_closed_while_registered(make_ctx):
    """decisions.md: POLLNVAL -> the handler is removed and poll() raises OSError(EBADF).  Only
    ppoll reports it: epoll (and "auto" once it has moved to epoll) drops a closed file from its
    set silently (docs/aio-context.md, "fd monitors")."""
    ctx = make_ctx(fdmon="poll")
    ctx.set_exception_handler(None)  # the case without a handler: poll() raises it
    r, w = os.pipe()
    calls = []
    ctx.set_fd_handler(r, io_read=lambda: calls.append(1))
    assert ctx.poll(False) is False
    os.close(r)  # closed while still registered
    try:
        with pytest.raises(OSError) as info:
            ctx.poll(False)
    finally:
        os.close(w)
    assert info.value.errno == errno.EBADF
    assert str(r) in str(info.value)
    # The handler was removed: the context keeps working.
    assert ctx.poll(False) is False
    ctx.bh_schedule_oneshot(lambda: calls.append("bh"))
    assert ctx.poll(False) is True
    assert calls == ["bh"]


# -- garbage arguments: exceptions only, never a crash ------------------------------

GARBAGE = [None, -1, 2**70, -(2**70), "x", b"x", 1.5, float("nan"), [], {}, object()]


def call_quietly(fn, *args):
    try:
        fn(*args)
    except Exception:  # noqa: BLE001, S110 - any exception is fine here; a crash or hang is not
        pass


def test_garbage_arguments_to_context_methods(make_ctx, qloop_module, sockpair):
    ctx = make_ctx(fdmon="poll")
    ctx.set_exception_handler(lambda c, e: None)
    a, _ = sockpair()
    methods = [
        ("set_fd_handler", 5), ("set_fd_poll", 3), ("set_event_notifier", 4),
        ("notify", 1), ("compute_timeout", 1), ("bh_new", 1), ("bh_schedule_oneshot", 1),
        ("timer_new", 3), ("timer_new_ns", 2), ("timer_new_us", 2), ("timer_new_ms", 2),
        ("set_poll_params", 3), ("set_exception_handler", 1),
    ]
    for name, arity in methods:
        fn = getattr(ctx, name)
        for g in GARBAGE:
            for pos in range(arity):
                args = [g] * (pos + 1)
                call_quietly(fn, *args)
            call_quietly(fn, *([g] * arity))
    for g in GARBAGE:
        call_quietly(ctx.set_fd_handler, a, g)
        call_quietly(ctx.set_fd_handler, a, None, g)
    ctx.set_fd_handler(a)
    ctx.set_poll_params(0, 0, 0)
    ctx.set_exception_handler(None)
    # Still a working context.
    while ctx.poll(False):
        pass
    ran = []
    ctx.bh_schedule_oneshot(lambda: ran.append(1))
    assert ctx.poll(False) is True
    assert ran == [1]


def test_garbage_arguments_to_bh_timer_notifier(ctx, qloop_module):
    bh = ctx.bh_new(lambda: None)
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: None)
    nl = qloop_module.NotifierList()
    for g in GARBAGE:
        for fn in (bh.schedule, bh.schedule_idle, bh.cancel, t.delete):
            call_quietly(fn, g)
        for fn in (t.mod, t.mod_ns, t.mod_anticipate, t.mod_anticipate_ns, t.expired):
            call_quietly(fn, g)
        for fn in (nl.add, nl.remove, qloop_module.EventNotifier, qloop_module.AioContext,
                   qloop_module.clock_get_ns, qloop_module.clock_get_us,
                   qloop_module.clock_get_ms, qloop_module.clock_is_enabled,
                   qloop_module.soonest_timeout, qloop_module.timeout_ns_to_ms):
            call_quietly(fn, g)
        call_quietly(qloop_module.soonest_timeout, g, g)
        call_quietly(qloop_module.clock_enable, g, True)
    t.delete()
    nl.notify()
    bh.schedule()
    assert ctx.poll(False) is True
    bh.delete()


@pytest.mark.parametrize("bad", ["1", 1.5, None], ids=repr)
def test_advance_virtual_time_bad_type(qloop_module, bad):
    qloop_module.clock_set_manual(True)
    with pytest.raises(TypeError):
        qloop_module.clock_advance_virtual_time(bad)


@pytest.mark.parametrize("bad", ["1", 1.5, None], ids=repr)
def test_timeout_helpers_bad_type(qloop_module, bad):
    with pytest.raises(TypeError):
        qloop_module.timeout_ns_to_ms(bad)
    with pytest.raises(TypeError):
        qloop_module.soonest_timeout(bad, 1)


def test_objects_of_closed_context_do_not_crash(qloop_module):
    """BHs and timers that outlive their context: only RuntimeError (or nothing), no crash,
    and their callbacks never run."""
    ran = []
    ctx = qloop_module.AioContext()
    bh = ctx.bh_new(lambda: ran.append("bh"))
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: ran.append("timer"))
    t.mod_ns(0)
    bh.schedule()
    ctx.close()
    for call in (bh.schedule, bh.schedule_idle, bh.cancel, lambda: t.mod_ns(0),
                 lambda: t.mod_anticipate_ns(0), t.delete, lambda: t.pending,
                 lambda: t.expire_time_ns, lambda: t.expired(0), bh.delete):
        try:
            call()
        except RuntimeError:
            pass
    with qloop_module.AioContext() as other:
        assert other.poll(False) is False
    assert ran == []


def test_dropping_unclosed_context_does_not_crash(qloop_module, sockpair):
    import gc

    a, _ = sockpair()
    for _ in range(10):
        ctx = qloop_module.AioContext()
        ctx.set_fd_handler(a, io_read=lambda: None)
        ctx.bh_new(lambda: None).schedule()
        t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: None)
        t.mod_ns(10**18)
        del ctx, t
        gc.collect()
    os.fstat(a.fileno())  # the user's fd is still open (OSError if a context closed it)


@pytest.mark.parametrize("method", ["mod", "mod_ns", "mod_anticipate", "mod_anticipate_ns", "expired"])
@pytest.mark.parametrize("bad", [1.5, True, "1", None], ids=repr)
def test_timer_time_arguments_must_be_int(ctx, qloop_module, method, bad):
    """Expiry times are ints (like expired()'s current_time): a float would be truncated
    silently and a bool is not a time."""
    t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: None)
    with pytest.raises(TypeError):
        getattr(t, method)(bad)
    assert t.pending is False


def test_aiocontext_cannot_be_subclassed(qloop_module):
    """The core's AioContext is a final C type (direct C calls on every hot path); the
    fallback refuses subclasses the same way."""
    with pytest.raises(TypeError, match="not an acceptable base type"):
        class Sub(qloop_module.AioContext):
            pass
