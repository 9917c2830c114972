"""fd monitors (docs/aio-context.md, "fd monitors"): "poll", "epoll", "auto" (ppoll while only
the context's own notifier is registered, epoll from the first fd waited on)."""

from __future__ import annotations

import os
import tempfile

import pytest

from _mainloop_support import run_python_json


class Notifiers:
    """n EventNotifiers registered on ctx with counting io_read callbacks."""

    def __init__(self, ctx, qloop_module, n: int) -> None:
        self.ctx = ctx
        self.items = [qloop_module.EventNotifier() for _ in range(n)]
        self.counts = [0] * n
        for i, e in enumerate(self.items):
            ctx.set_event_notifier(e, self._cb(i))

    def _cb(self, i):
        def cb(n):
            assert n.test_and_clear()
            self.counts[i] += 1

        return cb

    def remove(self, i) -> None:
        self.ctx.set_event_notifier(self.items[i], None)

    def close(self) -> None:
        for e in self.items:
            try:
                self.ctx.set_event_notifier(e, None)
            except RuntimeError:
                pass  # context already closed
            e.close()


@pytest.fixture
def notifiers(qloop_module):
    made = []

    def factory(ctx, n):
        ns = Notifiers(ctx, qloop_module, n)
        made.append(ns)
        return ns

    yield factory
    for ns in made:
        ns.close()


def upgraded_ctx(make_ctx, notifiers, extra=64):
    ctx = make_ctx(fdmon="auto")
    ns = notifiers(ctx, extra)
    ctx.poll(False)
    assert ctx.fdmon == "epoll"
    return ctx, ns


@pytest.mark.parametrize("fdmon, expected", [("poll", "poll"), ("epoll", "epoll"), ("auto", "poll"),
                                             ("io_uring", "io_uring")])
def test_fdmon_reports_backend(make_ctx, fdmon, expected):
    ctx = make_ctx(fdmon=fdmon)
    assert ctx.fdmon == expected


def test_default_is_auto_starting_on_poll(qloop_module):
    with qloop_module.AioContext() as ctx:
        assert ctx.fdmon == "poll"


def test_auto_stays_on_poll_with_only_its_notifier(make_ctx):
    ctx = make_ctx(fdmon="auto")
    for _ in range(3):
        ctx.poll(False)
    assert ctx.fdmon == "poll"


@pytest.mark.parametrize(("count", "which"), [(1, 0), (64, 37)])
def test_auto_moves_to_epoll_at_the_first_fd(make_ctx, notifiers, count, which):
    ctx = make_ctx(fdmon="auto")
    ns = notifiers(ctx, count)
    assert ctx.fdmon == "poll"  # the move happens inside a wait
    ctx.poll(False)
    assert ctx.fdmon == "epoll"
    # It keeps working after the move.
    ns.items[which].set()
    assert ctx.poll(False) is True
    assert ns.counts[which] == 1 and sum(ns.counts) == 1
    assert ctx.poll(False) is False


def test_auto_does_not_move_inside_a_nested_poll(make_ctx, notifiers):
    ctx = make_ctx(fdmon="auto")
    seen = []

    def nested():
        notifiers(ctx, 3)
        ctx.poll(False)
        seen.append(ctx.fdmon)

    ctx.bh_schedule_oneshot(nested)
    assert ctx.poll(False) is True
    assert seen == ["poll"]
    ctx.poll(False)  # outermost again: the move happens now
    assert ctx.fdmon == "epoll"


def test_no_downgrade_when_fds_are_removed(make_ctx, notifiers):
    ctx, ns = upgraded_ctx(make_ctx, notifiers)
    for i in range(1, 64):
        ns.remove(i)
    ctx.poll(False)
    assert ctx.fdmon == "epoll"
    ns.items[0].set()
    assert ctx.poll(False) is True
    assert ns.counts[0] == 1


def test_forced_poll_never_upgrades(make_ctx, notifiers):
    ctx = make_ctx(fdmon="poll")
    ns = notifiers(ctx, 100)
    ctx.poll(False)
    assert ctx.fdmon == "poll"
    ns.items[99].set()
    assert ctx.poll(False) is True
    assert ns.counts[99] == 1


def test_epoll_error_falls_back_to_poll(make_ctx, notifiers):
    """Any epoll_ctl error (a regular file cannot be epolled) disables epoll."""
    ctx, ns = upgraded_ctx(make_ctx, notifiers)
    calls = []
    with tempfile.TemporaryFile() as f:
        f.write(b"data")
        f.flush()
        ctx.set_fd_handler(f, io_read=lambda: calls.append(1))
        assert ctx.poll(False) is True  # a regular file is always readable for ppoll
        assert ctx.fdmon == "poll"
        assert calls == [1]
        ctx.set_fd_handler(f)
    # Disabled for good: more fds never bring epoll back.
    ns.items[5].set()
    assert ctx.poll(False) is True
    assert ns.counts[5] == 1
    assert ctx.fdmon == "poll"


# -- identical behaviour on every backend ---------------------------------------------


def backend_ctx(kind, make_ctx, notifiers):
    if kind == "upgraded":
        ctx, _ = upgraded_ctx(make_ctx, notifiers)
        return ctx
    ctx = make_ctx(fdmon=kind)
    assert ctx.fdmon == kind
    return ctx


BACKENDS = ["poll", "epoll", "upgraded"]


@pytest.mark.parametrize("kind", BACKENDS)
def test_backend_level_triggered_read_write_remove(kind, make_ctx, notifiers, sockpair):
    ctx = backend_ctx(kind, make_ctx, notifiers)
    a, b = sockpair()
    calls = []
    ctx.set_fd_handler(a, io_read=lambda: calls.append("r"))
    assert ctx.poll(False) is False
    b.send(b"x")
    assert ctx.poll(False) is True
    assert ctx.poll(False) is True  # not drained: called again
    assert calls == ["r", "r"]
    ctx.set_fd_handler(a, io_read=lambda: calls.append("r2"), io_write=lambda: calls.append("w"))
    assert ctx.poll(False) is True
    assert calls[2:] == ["r2", "w"]
    ctx.set_fd_handler(a)
    assert ctx.poll(False) is False
    assert len(calls) == 4


@pytest.mark.parametrize("kind", BACKENDS)
def test_backend_hup(kind, make_ctx, notifiers):
    ctx = backend_ctx(kind, make_ctx, notifiers)
    r, w = os.pipe()
    try:
        calls = []
        ctx.set_fd_handler(r, io_read=lambda: calls.append(os.read(r, 10)))
        assert ctx.poll(False) is False
        os.close(w)
        w = -1
        assert ctx.poll(False) is True
        assert calls == [b""]
        ctx.set_fd_handler(r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


@pytest.mark.parametrize("kind", BACKENDS)
def test_backend_replace_inside_read(kind, make_ctx, notifiers, sockpair):
    ctx = backend_ctx(kind, make_ctx, notifiers)
    a, b = sockpair()
    calls = []

    def r1():
        calls.append("r1")
        ctx.set_fd_handler(a, io_read=lambda: calls.append("r2"))

    ctx.set_fd_handler(a, io_read=r1, io_write=lambda: calls.append("w1"))
    b.send(b"x")
    assert ctx.poll(False) is True
    assert calls == ["r1"]
    assert ctx.poll(False) is True
    assert calls == ["r1", "r2"]
    ctx.set_fd_handler(a)


@pytest.mark.parametrize("kind", BACKENDS)
def test_backend_many_ready_each_once(kind, make_ctx, notifiers, qloop_module):
    """More ready fds than one epoll_wait returns (128): all are seen, each once."""
    ctx = backend_ctx(kind, make_ctx, notifiers)
    ns = notifiers(ctx, 200)
    ctx.poll(False)
    for e in ns.items:
        e.set()
    polls = 0
    while ctx.poll(False):
        polls += 1
        assert polls < 10
    assert ns.counts == [1] * 200


@pytest.mark.parametrize("kind", BACKENDS)
def test_backend_blocking_wait_woken_by_fd(kind, make_ctx, notifiers, sockpair, threads, poll_until):
    ctx = backend_ctx(kind, make_ctx, notifiers)
    a, b = sockpair()
    got = []
    ctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))
    ctx.poll(False)
    threads.start(b.send, b"wake")
    poll_until(ctx, lambda: got)
    threads.join_all()
    assert got == [b"wake"]
    ctx.set_fd_handler(a)


@pytest.mark.parametrize("kind", BACKENDS)
def test_backend_blocking_timer_never_early(kind, make_ctx, notifiers, qloop_module, poll_until):
    ctx = backend_ctx(kind, make_ctx, notifiers)
    rt = qloop_module.ClockType.REALTIME
    ran = []
    t = ctx.timer_new_ns(rt, lambda: ran.append(qloop_module.clock_get_ns(rt)))
    deadline = qloop_module.clock_get_ns(rt) + 10_000_000
    t.mod_ns(deadline)
    poll_until(ctx, lambda: ran)
    assert ran[0] >= deadline


@pytest.mark.parametrize("kind", BACKENDS)
def test_backend_notify_and_bh(kind, make_ctx, notifiers, watchdog):
    ctx = backend_ctx(kind, make_ctx, notifiers)
    dog = watchdog(ctx, 5.0)
    ctx.poll(False)
    ctx.notify()
    assert ctx.poll(True) is False
    ctx.bh_schedule_oneshot(lambda: None)
    assert ctx.poll(True) is True
    assert not dog.fired


def test_upgrade_with_handlers_added_from_other_thread(make_ctx, qloop_module, notifiers, threads):
    """Handlers added by another thread around the epoll upgrade are all monitored (QEMU once
    lost a handler added by another thread while it copied the handlers into epoll)."""
    ctx = make_ctx(fdmon="auto")
    notifiers(ctx, 56)
    rt = qloop_module.ClockType.REALTIME
    dog_fired = []
    dog = ctx.timer_new_ns(rt, lambda: dog_fired.append(1))
    dog.mod_ns(qloop_module.clock_get_ns(rt) + 10 * 10**9)
    ctx.poll(False)
    extra = [qloop_module.EventNotifier() for _ in range(24)]
    counts = [0] * len(extra)

    def make_cb(i):
        def cb(n):
            if n.test_and_clear():
                counts[i] += 1

        return cb

    def producer():
        for i, e in enumerate(extra):
            ctx.set_event_notifier(e, make_cb(i))
            e.set()

    try:
        threads.start(producer)
        while sum(counts) < len(extra) and not dog_fired:
            ctx.poll(True)
        threads.join_all()
        assert not dog_fired, f"lost fd events: {counts}"
        assert counts == [1] * len(extra)
        assert ctx.fdmon == "epoll"
    finally:
        dog.delete()
        for e in extra:
            ctx.set_event_notifier(e, None)
            e.close()


@pytest.mark.parametrize("kind", BACKENDS)
def test_backend_fd_number_reused_after_close(kind, make_ctx, notifiers, sockpair):
    """An fd closed while registered and its number reused by a new file: the new
    registration must work (epoll tracks open files, not numbers).  ``os.dup2`` puts the
    new file on the old number, so the reuse always happens."""
    import socket

    ctx = backend_ctx(kind, make_ctx, notifiers)
    c, writer = sockpair()  # made first, so neither can take the old number
    a, b = socket.socketpair()
    old_fd = a.fileno()
    ctx.set_fd_handler(a, io_read=lambda: None)
    a.close()  # closed without unregistering
    b.close()
    assert os.dup2(c.fileno(), old_fd) == old_fd  # a new file under the old number
    try:
        got = []
        ctx.set_fd_handler(old_fd, io_read=lambda: got.append(os.read(old_fd, 10)))
        writer.send(b"new")
        polls = 0
        while not got:
            ctx.poll(False)
            polls += 1
            assert polls < 10, "the handler on the reused fd number never ran"
        assert got == [b"new"]
        ctx.set_fd_handler(old_fd)
        assert ctx.poll(False) is False
    finally:
        os.close(old_fd)


# -- the wait with a timeout: epoll_pwait2, or ppoll on the epoll fd where it is missing -------


def _kernel_version() -> tuple[int, ...]:
    release = os.uname().release.split("-")[0]
    return tuple(int(p) for p in release.split(".")[:2] if p.isdigit())


PWAIT2_CHILD = r"""
import json, socket, qloop
rt = qloop.ClockType.REALTIME
out = {"in_use": qloop._core._epoll_pwait2_in_use()}
with qloop.AioContext(fdmon="auto") as ctx:
    a, b = socket.socketpair()
    got = []
    ctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))
    ctx.poll(False)
    out["fdmon"] = ctx.fdmon
    ran = []
    t = ctx.timer_new_ns(rt, lambda: ran.append(qloop.clock_get_ns(rt)))
    deadline = qloop.clock_get_ns(rt) + 3_000_000
    t.mod_ns(deadline)
    while not ran:
        ctx.poll(True)  # a blocking wait with a finite timeout
    out["early"] = ran[0] < deadline
    t.mod_ns(qloop.clock_get_ns(rt) + 10 * 10**9)  # the wait below has a timeout too
    b.send(b"x")
    while not got:
        ctx.poll(True)
    out["got"] = got[0].decode()
    t.delete()
    ctx.set_fd_handler(a)
    a.close()
    b.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize("switch, in_use", [("", True), ("0", False)])
def test_timed_epoll_wait_with_and_without_epoll_pwait2(qloop_module, switch, in_use):
    """QLOOP_EPOLL_PWAIT2=0 starts the core on the two-call wait that kernels without
    epoll_pwait2 (before Linux 5.11, or a sandbox refusing it) get: same behaviour."""
    if qloop_module.__name__ != "qloop._core":
        pytest.skip("the compiled core's wait; the fallback uses select.epoll (ms timeouts)")
    if in_use and _kernel_version() < (5, 11):
        pytest.skip("epoll_pwait2 needs Linux 5.11")
    out = run_python_json(qloop_module, PWAIT2_CHILD, QLOOP_EPOLL_PWAIT2=switch)
    assert out == {"in_use": in_use, "fdmon": "epoll", "early": False, "got": "x"}


SECCOMP_CHILD = r"""
import ctypes, json, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
# a seccomp filter answering epoll_pwait2 (441 on every architecture) with errno ERR, as a
# sandbox that does not know the call does; every other system call is allowed
ERR = int(sys.argv[1])
prog = [(0x20, 0, 0, 0), (0x15, 0, 1, 441), (0x06, 0, 0, 0x00050000 | ERR),
        (0x06, 0, 0, 0x7FFF0000)]
buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in prog))
fprog = struct.pack("HxxxxxxP", len(prog), ctypes.addressof(buf))
fprog_buf = ctypes.create_string_buffer(fprog)
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, fprog_buf, 0, 0) != 0:
    print(json.dumps({"skip": ctypes.get_errno()}))
    sys.exit(0)
import qloop
rt = qloop.ClockType.REALTIME
out = {"before": qloop._core._epoll_pwait2_in_use()}
with qloop.AioContext() as ctx:
    a, b = socket.socketpair()
    got = []
    ctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))
    ctx.poll(False)
    ran = []
    t = ctx.timer_new_ns(rt, lambda: ran.append(qloop.clock_get_ns(rt)))
    deadline = qloop.clock_get_ns(rt) + 3_000_000
    t.mod_ns(deadline)
    while not ran:
        ctx.poll(True)  # the refused epoll_pwait2, then the two-call wait
    out["after"] = qloop._core._epoll_pwait2_in_use()
    out["early"] = ran[0] < deadline
    out["fdmon"] = ctx.fdmon
    t.mod_ns(qloop.clock_get_ns(rt) + 10 * 10**9)
    b.send(b"x")
    while not got:
        ctx.poll(True)
    out["got"] = got[0].decode()
    t.delete()
    ctx.set_fd_handler(a)
    a.close()
    b.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize("err", ["ENOSYS", "EPERM"])
def test_epoll_pwait2_refused_by_seccomp(qloop_module, err):
    """A real refusal (a seccomp filter in a child): the first timed wait notices it and the
    core goes on with the two-call wait, process-wide."""
    import errno
    import platform

    if qloop_module.__name__ != "qloop._core":
        pytest.skip("the compiled core's wait")
    if platform.system() != "Linux" or _kernel_version() < (5, 11):
        pytest.skip("needs Linux 5.11 (epoll_pwait2) and seccomp")
    code = SECCOMP_CHILD.replace("sys.argv[1]", str(getattr(errno, err)))
    out = run_python_json(qloop_module, code, QLOOP_EPOLL_PWAIT2="")
    if "skip" in out:
        pytest.skip(f"seccomp filter refused: errno {out['skip']}")
    assert out == {"before": True, "after": False, "early": False, "fdmon": "epoll",
                   "got": "x"}
