"""The io_uring fd monitor (docs/aio-context.md, "fd monitors"): ``AioContext(fdmon="io_uring")``
in the compiled core, and the explicit "not available" answer everywhere it cannot be had (the
pure-Python implementation; a kernel without io_uring; io_uring refused by a seccomp filter or by
``kernel.io_uring_disabled``).  The fd-handler behaviour itself is tests/test_fd_handlers.py,
which runs on every monitor."""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import threading
import time

import pytest

from _mainloop_support import (
    PROMPT_S,
    join,
    run_python_json,
    start_thread,
    wait_until_thread_sleeps,
)
from conftest import io_uring_unavailable, skip_without_io_uring


def _sysctl() -> str:
    """kernel.io_uring_disabled ("0" where io_uring is allowed to everyone)."""
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return f.read().strip()
    except OSError:
        return ""


def _info(qloop_module, ctx):
    return qloop_module._uring_info(ctx)


@pytest.fixture
def uctx(make_ctx, qloop_module):
    """A drained io_uring context (core only: skipped where the implementation lacks it)."""
    return make_ctx(fdmon="io_uring")


# -- the explicit "not available" answer ---------------------------------------------------


def test_fallback_says_not_available(qloop_module):
    if qloop_module.__name__ != "qloop._fallback":
        pytest.skip("the pure-Python implementation's answer")
    with pytest.raises(OSError) as info:
        qloop_module.AioContext(fdmon="io_uring")
    assert info.value.errno == errno.ENOSYS
    assert "fdmon='io_uring' is not available" in str(info.value)
    assert "pure-Python" in str(info.value)


@pytest.mark.parametrize(("switch", "err", "cause"), [
    ("enosys", errno.ENOSYS, "this kernel has no io_uring"),
    ("eperm", errno.EPERM, "seccomp filter"),
    ("disabled", errno.EPERM, "kernel.io_uring_disabled=2"),
])
def test_switch_simulates_unavailable_io_uring(qloop_module, monkeypatch, switch, err, cause):
    """Both implementations give the same error, naming the cause."""
    if switch == "eperm" and _sysctl() != "0":
        pytest.skip("the sysctl restricts io_uring here: EPERM names it instead")
    monkeypatch.setenv("QLOOP_IO_URING", switch)
    with pytest.raises(OSError) as info:
        qloop_module.AioContext(fdmon="io_uring")
    assert info.value.errno == err
    assert str(info.value).startswith("[Errno")
    assert "fdmon='io_uring' is not available" in str(info.value)
    assert cause in str(info.value)
    # the other monitors are untouched
    for fdmon in ("auto", "poll", "epoll"):
        with qloop_module.AioContext(fdmon=fdmon) as ctx:
            assert ctx.fdmon in ("poll", "epoll")


_SECCOMP_CHILD = r"""
import ctypes, errno, json, os, socket, struct, sys

# A seccomp filter (classic BPF) answering io_uring_setup (425 on every architecture) with
# -ERR and allowing everything else.
ERR = int(sys.argv[1]) if len(sys.argv) > 1 else {err}
prog = [
    (0x20, 0, 0, 0),                      # ld  [nr]
    (0x15, 0, 1, 425),                    # jeq #425, deny, allow
    (0x06, 0, 0, 0x00050000 | ERR),       # ret SECCOMP_RET_ERRNO | ERR
    (0x06, 0, 0, 0x7FFF0000),             # ret SECCOMP_RET_ALLOW
]
buf = b"".join(struct.pack("HBBI", *ins) for ins in prog)
filt = ctypes.create_string_buffer(buf)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog), ctypes.addressof(filt))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER

import qloop
out = {{}}
try:
    qloop.AioContext(fdmon="io_uring").close()
    out["io_uring"] = "available"
except OSError as exc:
    out["io_uring"] = [exc.errno, str(exc)]
# everything else still works: an fd handler on every other monitor, and the asyncio loop
got = []
for fdmon in ("auto", "poll", "epoll"):
    a, b = socket.socketpair()
    with qloop.AioContext(fdmon=fdmon) as ctx:
        ctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))
        b.send(b"x")
        while not ctx.poll(True):
            pass
        ctx.set_fd_handler(a)
    a.close(); b.close()
out["handlers"] = len(got)
loop = qloop.new_event_loop()
out["loop"] = loop.run_until_complete(__import__("asyncio").sleep(0, "ok"))
loop.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize(("err", "cause"), [
    (errno.EPERM, "seccomp filter"),
    (errno.ENOSYS, "this kernel has no io_uring"),
])
def test_seccomp_filter_refusing_io_uring(qloop_module, err, cause):
    """A real seccomp filter in a child process: io_uring_setup fails with EPERM (as Docker's
    default profile answers) or ENOSYS; fdmon='io_uring' raises naming it, the rest works."""
    if not hasattr(os, "fork") or os.uname().sysname != "Linux":
        pytest.skip("seccomp is Linux-only")
    if err == errno.EPERM and _sysctl() != "0":
        pytest.skip("the sysctl restricts io_uring here: EPERM names it instead")
    out = run_python_json(qloop_module, _SECCOMP_CHILD.format(err=err))
    assert "fdmon='io_uring' is not available" in out["io_uring"][1]
    if qloop_module.__name__ == "qloop._fallback":
        assert out["io_uring"][0] == errno.ENOSYS and "pure-Python" in out["io_uring"][1]
    else:
        assert out["io_uring"][0] == err
        assert cause in out["io_uring"][1]
    assert out["handlers"] == 3
    assert out["loop"] == "ok"


def test_core_has_io_uring_where_the_kernel_offers_it(qloop_module):
    if qloop_module.__name__ == "qloop._fallback":
        pytest.skip("the compiled core's answer")
    reason = io_uring_unavailable(qloop_module)
    if _sysctl() == "0" and reason is not None:
        assert "seccomp" in reason or "no io_uring" in reason, reason  # a sandbox, named
    if reason is None:
        with qloop_module.AioContext(fdmon="io_uring") as ctx:
            assert ctx.fdmon == "io_uring"


# -- the monitor's semantics (core) --------------------------------------------------------


def test_reports_io_uring_and_uses_the_fast_flags(uctx, qloop_module):
    assert uctx.fdmon == "io_uring"
    info = _info(qloop_module, uctx)
    assert info["single_issuer"] and info["defer_taskrun"]  # kernel 6.1+
    assert info["migrations"] == 0


def test_plain_switch_sets_up_without_the_fast_flags(qloop_module, monkeypatch):
    skip_without_io_uring(qloop_module)
    monkeypatch.setenv("QLOOP_IO_URING", "plain")
    with qloop_module.AioContext(fdmon="io_uring") as ctx:
        assert not _info(qloop_module, ctx)["single_issuer"]
        a, b = socket.socketpair()
        with a, b:
            got = []
            ctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))
            b.send(b"x")
            assert ctx.poll(True) is True
            assert got == [b"x"]
            ctx.set_fd_handler(a)


def test_changes_are_queued_until_the_next_wait(uctx, qloop_module, sockpair):
    a, b = sockpair()
    before = _info(qloop_module, uctx)["queued"]
    got = []
    uctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))
    assert _info(qloop_module, uctx)["queued"] == before + 1
    uctx.poll(False)  # the wait (a handler without io_poll makes poll(False) wait) submits it
    b.send(b"x")
    assert uctx.poll(True) is True
    assert got == [b"x"]
    uctx.set_fd_handler(a)


def test_level_triggered_through_rearming(uctx, sockpair):
    """One-shot polls re-armed after each completion: unread data is reported every time."""
    a, b = sockpair()
    calls = []
    uctx.set_fd_handler(a, io_read=lambda: calls.append(1))  # never reads
    b.send(b"data")
    for i in range(1, 6):
        assert uctx.poll(True) is True
        assert len(calls) == i
    uctx.set_fd_handler(a)


def test_blocking_wait_ends_at_a_timer(uctx, qloop_module):
    """A blocking wait carries a timeout: the timer runs, with nothing else happening."""
    fired = []
    t = uctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: fired.append(1))
    t.mod_ns(qloop_module.clock_get_ns(qloop_module.ClockType.REALTIME) + 2_000_000)
    while not fired:
        uctx.poll(True)
    assert fired == [1]


def test_removal_inside_poll_completes_with_its_completion(uctx, qloop_module, sockpair):
    """Removing an armed handler from a callback: its POLL_REMOVE goes out at the next wait and
    the handler is held until its POLL_ADD completes (cancelled)."""
    a, _ = sockpair()
    c, _ = sockpair()
    uctx.set_fd_handler(c, io_read=lambda: None)  # never ready: poll(False) then waits
    uctx.set_fd_handler(a, io_read=lambda: None)
    uctx.poll(False)  # armed
    uctx.bh_schedule_oneshot(lambda: uctx.set_fd_handler(a))
    assert uctx.poll(False) is True
    assert _info(qloop_module, uctx)["zombies"] == 1
    uctx.poll(False)  # submits the POLL_REMOVE, reaps the cancelled POLL_ADD
    assert _info(qloop_module, uctx)["zombies"] == 0
    uctx.set_fd_handler(c)


def test_removal_outside_poll_releases_the_file_at_once(uctx, sockpair):
    """Outside poll() the cancellation is submitted at once: after removal and close() the
    peer sees EOF without another poll (the ring held a reference to the socket)."""
    a, b = sockpair()
    uctx.set_fd_handler(a, io_read=lambda: None)
    uctx.poll(False)
    uctx.set_fd_handler(a)
    a.close()
    b.settimeout(10)
    assert b.recv(10) == b""


def test_fd_closed_before_arming_is_reported(uctx, ctx_checks, qloop_module):
    """POLL_ADD on a closed fd fails (EBADF): as ppoll's POLLNVAL, the handler is removed and
    the error reported."""
    ctx_checks.expect_errors(OSError)
    a, b = socket.socketpair()
    fd = a.fileno()
    uctx.set_fd_handler(fd, io_read=lambda: None)
    a.close()
    with pytest.raises(OSError) as info:
        uctx.poll(False)
    assert info.value.errno == errno.EBADF
    b.close()
    assert uctx.resource_counts()[2] == 0


def test_wait_is_retried_after_a_signal(uctx, qloop_module):
    """A signal whose handler returns does not end the blocking wait (EINTR is retried): the
    wait ends at the timer."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    seen = []
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *_: seen.append(1))
    try:
        t = uctx.timer_new_ms(qloop_module.ClockType.REALTIME, lambda: fired.append(1))
        t.mod(qloop_module.clock_get_ms(qloop_module.ClockType.REALTIME) + 300)
        uctx.poll(False)  # accept the notify of the timer's arming
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        assert uctx.poll(True) is True  # one wait: through the signal, up to the timer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert seen == [1] and fired == [1]


def test_signal_handler_exception_ends_the_wait(uctx, qloop_module):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")

    class Boom(Exception):
        pass

    def raise_boom(*_):
        raise Boom

    uctx.set_exception_handler(None)
    old = signal.signal(signal.SIGALRM, raise_boom)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        with pytest.raises(Boom):
            while True:
                uctx.poll(True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_polled_from_another_thread_moves_the_ring(uctx, qloop_module, sockpair):
    """SINGLE_ISSUER rings belong to their creator: a context polled from another thread gets
    a new ring (without the flag) once, with every handler armed again."""
    a, b = sockpair()
    got = []
    uctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))
    uctx.poll(False)
    b.send(b"1")
    errors = []

    def other():
        try:
            while not got:
                uctx.poll(True)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    th = threading.Thread(target=other)
    th.start()
    th.join(10)
    assert not th.is_alive() and not errors
    assert got == [b"1"]
    info = _info(qloop_module, uctx)
    assert info["migrations"] == 1 and not info["single_issuer"]
    # back in this thread (the thread that armed the polls has exited): still working
    b.send(b"2")
    while len(got) < 2:
        uctx.poll(True)
    assert got == [b"1", b"2"]
    assert _info(qloop_module, uctx)["migrations"] == 1
    uctx.set_fd_handler(a)


def test_first_polled_in_another_thread_keeps_the_fast_ring(qloop_module, sockpair):
    """The ring is enabled by the first thread that uses it (an IOThread's context is created
    elsewhere): that thread owns it, with SINGLE_ISSUER and DEFER_TASKRUN, and nothing moves."""
    skip_without_io_uring(qloop_module)
    a, b = sockpair()
    ctx = qloop_module.AioContext(fdmon="io_uring")  # created here, never polled here
    try:
        assert not _info(qloop_module, ctx)["enabled"]
        got = []
        ctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))
        b.send(b"x")
        result = []

        def poller():
            while not got:
                ctx.poll(True)
            result.append(dict(_info(qloop_module, ctx), me=threading.get_ident()))
            ctx.set_fd_handler(a)
            ctx.poll(False)

        th = threading.Thread(target=poller)
        th.start()
        th.join(10)
        assert not th.is_alive()
        assert got == [b"x"]
        (info,) = result
        assert info["enabled"] and info["single_issuer"] and info["defer_taskrun"]
        assert info["migrations"] == 0 and info["owner"] == info["me"]
    finally:
        ctx.close()


def test_handler_set_from_another_thread_wakes_the_wait(uctx, sockpair):
    a, b = sockpair()
    got = []
    b.send(b"x")

    def register():
        uctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))

    th = threading.Thread(target=register)
    th.start()
    while not got:
        uctx.poll(True)
    th.join()
    assert got == [b"x"]
    uctx.set_fd_handler(a)


def test_many_fds_more_than_the_ring(uctx, qloop_module, sockpair):
    """More registrations than SQ entries (128) in one wait: submitted in batches."""
    pairs = [sockpair() for _ in range(300)]
    counts = [0] * len(pairs)

    def reader(i, s):
        def cb():
            s.recv(10)
            counts[i] += 1
        return cb

    for i, (a, _) in enumerate(pairs):
        uctx.set_fd_handler(a, io_read=reader(i, a))
    uctx.poll(False)
    for _, b in pairs:
        b.send(b"x")
    while sum(counts) < len(pairs):
        uctx.poll(True)
    assert counts == [1] * len(pairs)
    c, _ = sockpair()
    uctx.set_fd_handler(c, io_read=lambda: None)  # never ready: poll(False) then waits
    for a, _ in pairs:
        uctx.set_fd_handler(a)  # outside poll(): cancelled at once
    uctx.poll(False)  # reaps the cancellations
    assert _info(qloop_module, uctx)["zombies"] == 0
    uctx.set_fd_handler(c)


def test_close_with_armed_handlers(qloop_module, sockpair):
    skip_without_io_uring(qloop_module)
    a, b = sockpair()
    ctx = qloop_module.AioContext(fdmon="io_uring")
    ctx.set_fd_handler(a, io_read=lambda: None)
    ctx.poll(False)
    ctx.close()
    assert ctx.fdmon == "io_uring"
    a.close()
    b.settimeout(10)
    assert b.recv(10) == b""


_MAIN_LOOP_CHILD = r"""
import json, socket, threading, types
import qloop._core as core
from qloop._main import mainloop

# A main loop like the process-wide one, but whose main and iohandler contexts are io_uring
# ones: main_loop_wait() then waits on their ring fds (the ml_* steps of
# qloop/_cy/context_mainloop.pxi).
def make_ctx(fdmon="io_uring"):
    return core.AioContext(fdmon=fdmon)

ml = mainloop.MainLoop(types.SimpleNamespace(
    AioContext=make_ctx, BigLock=core.BigLock, MainLoopWait=core.MainLoopWait,
    glib_poller=core._CGLibPoller, clock_enable=core.clock_enable,
    clock_get_ns=core.clock_get_ns, clock_is_manual=core.clock_is_manual,
    clock_advance_virtual_time=core.clock_advance_virtual_time,
    virtual_deadline=core._virtual_deadline, module="qloop._core"))
api = ml.exports()
api["init_main_loop"]()
ctx = api["get_aio_context"]()
out = {"main": ctx.fdmon, "iohandler": api["iohandler_get_aio_context"]().fdmon}
a, b = socket.socketpair()
got = []
ctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))
api["main_loop_wait"](True)
b.send(b"x")
for _ in range(10):
    if got:
        break
    api["main_loop_wait"](False)
out["fd"] = [g.decode() for g in got]
ran = []
bh = ctx.bh_new(lambda: ran.append(1))
t = threading.Thread(target=bh.schedule)
t.start()
while not ran:
    api["main_loop_wait"](False)  # blocks until the BH's notify wakes the ring
t.join()
out["bh"] = len(ran)
got.clear()
api["set_fd_handler"](b.fileno(), lambda: got.append(b.recv(10)))  # the iohandler context
a.send(b"y")
while not got:
    api["main_loop_wait"](False)
out["iohandler_fd"] = [g.decode() for g in got]
ctx.set_fd_handler(a)
api["set_fd_handler"](b.fileno(), None)
print(json.dumps(out))
"""


def test_main_loop_waits_on_the_ring_fds(qloop_module):
    """main_loop_wait() over io_uring contexts: each context's ring fd in the one wait; fd
    handlers of both contexts and a BH scheduled from another thread are dispatched."""
    skip_without_io_uring(qloop_module)
    out = run_python_json(qloop_module, _MAIN_LOOP_CHILD, QLOOP_NO_GLIB="1")
    assert out == {"main": "io_uring", "iohandler": "io_uring", "fd": ["x"], "bh": 1,
                   "iohandler_fd": ["y"]}


def test_forked_child_sets_up_its_own_ring(uctx, qloop_module, sockpair):
    """A ring inherited across fork() shares its memory with the parent's: the child's first
    wait moves to a ring of its own, and the parent's goes on untouched."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork()")
    a, b = sockpair()
    got = []
    uctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))
    uctx.poll(False)  # armed in the parent's ring
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        status = 1
        try:
            b.send(b"c")
            while not got:
                uctx.poll(True)
            info = qloop_module._uring_info(uctx)
            ok = got == [b"c"] and info["migrations"] == 1 and info["single_issuer"]
            os.write(w, b"ok" if ok else repr((got, info)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        report = f.read()
    _, status = os.waitpid(pid, 0)
    assert report == b"ok" and status == 0, report
    # the child consumed "c" from the shared socket; the parent's ring still works
    got.clear()
    b.send(b"p")
    while not got:
        uctx.poll(True)
    assert got == [b"p"]
    assert _info(qloop_module, uctx)["migrations"] == 0
    uctx.set_fd_handler(a)


def test_nonblocking_poll_waits_while_the_ring_has_work(uctx, qloop_module, sockpair):
    """QEMU's need_wait: with every handler busy-pollable (io_poll), poll(False) skips the wait
    on ppoll and epoll, but on io_uring it still waits while changes are queued or completions
    are pending: registrations reach the kernel and removals complete."""
    a, b = sockpair()
    got = []
    uctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)),
                        io_poll=lambda: False, io_poll_ready=lambda: None)
    uctx.poll(False)  # the registration is submitted
    assert _info(qloop_module, uctx)["queued"] <= 1  # at most the notifier's re-arm
    b.send(b"x")
    while not got:
        uctx.poll(True)
    uctx.poll(False)  # the re-arm goes out
    uctx.set_fd_handler(a)  # armed: a zombie until its cancellation completes
    assert _info(qloop_module, uctx)["zombies"] == 1
    uctx.poll(False)
    assert _info(qloop_module, uctx)["zombies"] == 0


def test_outer_loop_sleeping_on_the_ring_fd_is_woken(uctx, qloop_module):
    """An outer loop (GLib, main_loop_wait) sleeps in poll() on the ring fd while another
    thread schedules a BH: the completion of the notifier's poll request must wake it.  Under
    DEFER_TASKRUN the kernel only queues that completion as work for io_uring_enter() and wakes
    no poll() on the fd, so the ring an outer loop polls is set up without it (before that, a
    round waited out its 5 s poll timeout)."""
    ran = []
    bh = uctx.bh_new(lambda: ran.append(time.monotonic()))
    me = threading.get_native_id()
    scheduled_at = []

    def producer():
        wait_until_thread_sleeps(me)
        scheduled_at.append(time.monotonic())
        bh.schedule()

    for _ in range(20):
        ran.clear()
        scheduled_at.clear()

        timeout_ns = uctx.source_prepare()
        assert timeout_ns == -1  # nothing due: the outer loop sleeps until woken
        fds = uctx.source_query()
        waiter = select.poll()
        for fd, events in fds:
            waiter.register(fd, events)
        t = start_thread(producer)
        ready = dict(waiter.poll(5000))
        join(t)
        revents = [ready.get(fd, 0) for fd, _ in fds]
        if uctx.source_check(revents):
            uctx.source_dispatch()
        assert ran, "the BH's notify did not wake the poll() on the ring fd"
        assert ran[0] - scheduled_at[0] < PROMPT_S
    info = _info(qloop_module, uctx)
    assert info["outer_polled"] and not info["defer_taskrun"]
    assert info["migrations"] == 0  # not a move to another thread
