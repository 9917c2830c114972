"""Adaptive busy polling (docs/aio-context.md, "Busy polling"; QEMU's nested-aio-poll test).

Rules exercised here (ppoll/epoll backends):
* busy polling runs only when ``poll_max_ns > 0``, the poll is blocking (a timeout of 0
  leaves no time to poll), and *every* registered handler has io_poll (+io_poll_ready);
* a handler joins the poll list only after its fd fired once;
* io_poll returning True makes the loop call io_poll_ready (not io_read) and is progress;
* io_poll_begin is called when poll mode starts, io_poll_end (then one last io_poll) when
  it is left right before a blocking wait;
* with all handlers pollable, a non-blocking poll does not look at fds at all.
"""

from __future__ import annotations

import pytest

MAX_NS = 50_000_000  # generous: growth needs block_ns < max_ns even on a slow machine


class PollHandler:
    """An EventNotifier handler whose io_poll reports a Python flag."""

    def __init__(self, ctx, qloop_module, begin_end: bool = True) -> None:
        self.ctx = ctx
        self.e = qloop_module.EventNotifier()
        self.flag = False
        self.log: list[str] = []
        ctx.set_event_notifier(self.e, self.io_read, self.io_poll, self.io_poll_ready)
        if begin_end:
            self.set_begin_end()

    def set_begin_end(self) -> None:
        self.ctx.set_fd_poll(self.e, io_poll_begin=self.begin, io_poll_end=self.end)

    def io_read(self, n) -> None:
        n.test_and_clear()
        self.log.append("read")

    def io_poll(self, n) -> bool:
        self.log.append("poll")
        return self.flag

    def io_poll_ready(self, n) -> None:
        self.flag = False
        self.log.append("ready")

    def begin(self, *args) -> None:
        self.log.append("begin")

    def end(self, *args) -> None:
        self.log.append("end")

    def count(self, what: str) -> int:
        return self.log.count(what)

    def close(self) -> None:
        self.ctx.set_event_notifier(self.e, None)
        self.e.close()


@pytest.fixture
def pctx(make_ctx):
    return make_ctx(fdmon="poll")


def test_set_poll_params_accepts_values(ctx):
    ctx.set_poll_params(32_768, 0, 0)
    ctx.set_poll_params(1_000_000, 2, 2)
    ctx.set_poll_params(0, 0, 0)
    assert ctx.poll(False) is False  # set_poll_params notifies; not progress


def test_no_busy_polling_when_disabled(pctx, qloop_module, watchdog):
    dog = watchdog(pctx, 5.0)
    h = PollHandler(pctx, qloop_module)
    try:
        pctx.poll(False)
        h.e.set()
        assert pctx.poll(True) is True
        assert h.count("read") == 1
        for _ in range(3):
            h.e.set()
            assert pctx.poll(True) is True
        assert h.count("read") == 4
        assert h.count("poll") == 0
        assert h.count("begin") == 0 and h.count("end") == 0
        assert not dog.fired
    finally:
        h.close()


def fire_once(ctx, h) -> None:
    """Make the handler's fd fire so that it joins the poll list."""
    h.e.set()
    assert ctx.poll(True) is True
    assert h.count("read") == 1


def test_handler_joins_polling_only_after_firing(pctx, qloop_module, watchdog):
    pctx.set_poll_params(MAX_NS, 2, 2)
    dog = watchdog(pctx, 5.0)
    h = PollHandler(pctx, qloop_module)
    try:
        assert pctx.poll(False) is False
        h.flag = True
        # Not yet in the poll list: a blocking poll does not busy-poll it; the fd is
        # set so the wait returns and io_read runs.
        h.e.set()
        assert pctx.poll(True) is True
        assert h.log == ["read"]
        # Now it polls: io_poll True -> io_poll_ready (not io_read), progress.
        assert pctx.poll(True) is True
        assert h.count("ready") == 1
        assert h.count("read") == 1
        assert h.count("poll") >= 1
        assert not dog.fired
    finally:
        h.close()


def test_busy_poll_ready_is_progress_and_skips_read(pctx, qloop_module, watchdog):
    pctx.set_poll_params(MAX_NS, 2, 2)
    dog = watchdog(pctx, 5.0)
    h = PollHandler(pctx, qloop_module)
    try:
        pctx.poll(False)
        fire_once(pctx, h)
        for i in range(1, 4):
            h.flag = True
            assert pctx.poll(True) is True
            assert h.count("ready") == i
        assert h.count("read") == 1
        assert not dog.fired
    finally:
        h.close()


def test_nonblocking_poll_does_not_busy_poll(pctx, qloop_module, watchdog):
    pctx.set_poll_params(MAX_NS, 2, 2)
    dog = watchdog(pctx, 5.0)
    h = PollHandler(pctx, qloop_module)
    try:
        pctx.poll(False)
        fire_once(pctx, h)
        polls = h.count("poll")
        h.flag = True
        assert pctx.poll(False) is False
        assert h.count("poll") == polls
        assert h.count("ready") == 0
        assert not dog.fired
    finally:
        h.close()


def test_all_pollable_nonblocking_poll_skips_fd_wait(pctx, qloop_module):
    """Timeout 0 and need_wait false (all handlers pollable) -> no wait."""
    h = PollHandler(pctx, qloop_module)
    try:
        pctx.poll(False)
        h.e.set()
        assert pctx.poll(False) is False
        assert h.count("read") == 0
        # A handler without io_poll makes need_wait true: the same poll now sees the fd.
        r = qloop_module.EventNotifier()
        pctx.set_event_notifier(r, lambda n: None)
        assert pctx.poll(False) is True
        assert h.count("read") == 1
        pctx.set_event_notifier(r, None)
        r.close()
    finally:
        h.close()


def test_non_pollable_handler_disables_busy_polling(pctx, qloop_module, sockpair, watchdog):
    pctx.set_poll_params(MAX_NS, 2, 2)
    dog = watchdog(pctx, 5.0)
    h = PollHandler(pctx, qloop_module)
    a, b = sockpair()
    reads = []
    try:
        pctx.poll(False)
        fire_once(pctx, h)
        polls = h.count("poll")
        pctx.set_fd_handler(a, io_read=lambda: reads.append(a.recv(10)))  # no io_poll
        pctx.poll(False)
        h.flag = True
        b.send(b"x")
        assert pctx.poll(True) is True
        assert reads == [b"x"]
        assert h.count("poll") == polls
        assert h.count("ready") == 0
        # Removing the non-pollable handler re-enables polling.
        pctx.set_fd_handler(a)
        assert pctx.poll(True) is True
        assert h.count("ready") == 1
        assert not dog.fired
    finally:
        h.close()


def test_io_poll_without_io_poll_ready_is_refused(pctx, sockpair):
    """decisions.md (where QEMU silently ignores a lone io_poll): ValueError,
    and nothing is registered."""
    a, _ = sockpair()
    with pytest.raises(ValueError, match=str(a.fileno())):
        pctx.set_fd_handler(a, io_read=lambda: None, io_poll=lambda: False)
    with pytest.raises(ValueError):
        pctx.set_fd_handler(a, io_read=lambda: None, io_poll_ready=lambda: None)
    with pytest.raises(ValueError):  # nothing was registered under a
        pctx.set_fd_poll(a, io_poll_begin=lambda: None)
    assert pctx.poll(False) is False


def test_io_poll_begin_end(pctx, qloop_module, watchdog):
    """Begin once when poll mode starts; end (then a last io_poll) before blocking."""
    rt = qloop_module.ClockType.REALTIME
    pctx.set_poll_params(MAX_NS, 2, 2)
    dog = watchdog(pctx, 5.0)
    h = PollHandler(pctx, qloop_module)
    try:
        pctx.poll(False)
        fire_once(pctx, h)
        assert h.count("begin") == 0
        h.log.clear()
        # Busy polling finds nothing, so poll mode is left before the wait, which a
        # near timer ends.
        ran = []
        t = pctx.timer_new_ns(rt, lambda: ran.append(1))
        t.mod_ns(qloop_module.clock_get_ns(rt) + 50_000_000)
        while pctx.poll(False):
            pass
        assert pctx.poll(True) is True
        while not ran:
            pctx.poll(True)
        assert h.count("begin") == 1
        assert h.count("end") == 1
        i_begin, i_end = h.log.index("begin"), h.log.index("end")
        assert i_begin < i_end
        assert "poll" in h.log[i_begin:i_end]  # busy polled while in poll mode
        assert "poll" in h.log[i_end:]  # one last io_poll after io_poll_end
        # Poll mode again: begin again; io_poll true ends it without leaving (timeout 0).
        h.log.clear()
        h.flag = True
        assert pctx.poll(True) is True
        assert h.log.count("begin") == 1
        assert h.log.count("end") == 0
        assert h.log.count("ready") == 1
        assert not dog.fired
    finally:
        h.close()


def test_replacing_handler_drops_begin_end(pctx, qloop_module, watchdog):
    """A re-registered handler has no io_poll_begin/end until set again."""
    pctx.set_poll_params(MAX_NS, 2, 2)
    dog = watchdog(pctx, 5.0)
    h = PollHandler(pctx, qloop_module)
    try:
        pctx.poll(False)
        pctx.set_event_notifier(h.e, h.io_read, h.io_poll, h.io_poll_ready)  # replace
        pctx.poll(False)
        fire_once(pctx, h)
        h.log.clear()
        h.flag = True
        assert pctx.poll(True) is True
        assert h.count("ready") == 1
        assert h.count("begin") == 0
        assert not dog.fired
    finally:
        h.close()


def test_set_fd_poll_on_unregistered_fd_is_refused(ctx, sockpair):
    """decisions.md (QEMU silently ignores it): ValueError naming the fd."""
    a, _ = sockpair()
    with pytest.raises(ValueError, match=str(a.fileno())):
        ctx.set_fd_poll(a, io_poll_begin=lambda *a: None, io_poll_end=lambda *a: None)
    assert ctx.poll(False) is False


def test_nested_aio_poll_with_busy_polling(make_ctx, qloop_module, watchdog):
    """QEMU's nested-aio-poll test: an io_poll_ready that runs a nested blocking poll is not
    re-invoked by it, and the nested poll runs the other handler instead."""
    ctx = make_ctx(fdmon="poll", drain=False)
    ctx.set_poll_params(MAX_NS, 2, 2)
    dog = watchdog(ctx, 5.0)
    state = {"nested": False, "nested_results": [], "violations": []}
    a = qloop_module.EventNotifier(active=True)  # starts set
    b = qloop_module.EventNotifier()
    log = []

    def io_read(n):
        log.append(("read", "A" if n is a else "B"))
        n.test_and_clear()

    def io_poll_true(n):
        if state["nested"]:
            state["violations"].append("A io_poll called in nested aio_poll")
        return True

    def io_poll_false(n):
        return False

    def io_poll_ready(n):
        log.append(("ready", "A"))
        if state["nested"]:
            state["violations"].append("A io_poll_ready re-entered")
        state["nested"] = True
        b.set()  # wake the following nested poll
        state["nested_results"].append(ctx.poll(True))
        state["nested"] = False

    def io_poll_never_ready(n):
        state["violations"].append("B io_poll_ready called")

    try:
        ctx.set_event_notifier(a, io_read, io_poll_true, io_poll_ready)
        ctx.set_event_notifier(b, io_read, io_poll_false, io_poll_never_ready)
        # Consume the registration notifies (no wait: every handler is pollable).
        assert ctx.poll(False) is False
        # Run A's io_read: this enrols A in polling.
        assert ctx.poll(True) is True
        assert log == [("read", "A")]
        # Second and third time: A's io_poll/io_poll_ready via busy polling, with a
        # nested blocking poll that runs B's io_read.
        assert ctx.poll(True) is True
        assert ctx.poll(True) is True
        assert log == [("read", "A"), ("ready", "A"), ("read", "B"), ("ready", "A"), ("read", "B")]
        assert state["nested_results"] == [True, True]
        assert state["violations"] == []
        assert not dog.fired
    finally:
        ctx.set_event_notifier(a, None)
        ctx.set_event_notifier(b, None)
        a.close()
        b.close()


def test_poll_time_never_grows_when_max_is_tiny(pctx, qloop_module, watchdog):
    """adjust_polling_time: block_ns > poll_max_ns shrinks poll.ns (to 0 here), so
    the handler is never busy-polled."""
    rt = qloop_module.ClockType.REALTIME
    pctx.set_poll_params(1, 2, 2)
    dog = watchdog(pctx, 5.0)
    h = PollHandler(pctx, qloop_module)
    try:
        pctx.poll(False)
        fire_once(pctx, h)
        h.log.clear()
        h.flag = True
        ran = []
        t = pctx.timer_new_ns(rt, lambda: ran.append(1))
        t.mod_ns(qloop_module.clock_get_ns(rt) + 10_000_000)
        while not ran:
            pctx.poll(True)
        assert h.count("poll") == 0
        assert h.count("ready") == 0
        assert not dog.fired
    finally:
        h.close()


def test_replaced_handler_leaves_busy_polling(pctx, qloop_module, watchdog):
    """Replacement creates a fresh node that is polled only after it fires again."""
    rt = qloop_module.ClockType.REALTIME
    pctx.set_poll_params(MAX_NS, 2, 2)
    dog = watchdog(pctx, 5.0)
    h = PollHandler(pctx, qloop_module, begin_end=False)
    try:
        pctx.poll(False)
        fire_once(pctx, h)
        h.flag = True
        assert pctx.poll(True) is True
        assert h.count("ready") == 1
        pctx.set_event_notifier(h.e, h.io_read, h.io_poll, h.io_poll_ready)  # replace
        pctx.poll(False)
        h.log.clear()
        h.flag = True
        ran = []
        t = pctx.timer_new_ns(rt, lambda: ran.append(1))
        t.mod_ns(qloop_module.clock_get_ns(rt) + 10_000_000)
        while pctx.poll(False):
            pass
        while not ran:
            pctx.poll(True)
        assert h.count("poll") == 0
        assert h.count("ready") == 0
        assert not dog.fired
    finally:
        h.close()


def test_fd_handler_poll_callbacks_take_no_arguments(pctx, qloop_module, watchdog):
    """set_fd_handler's io_poll()/io_poll_ready() take no arguments (API.md)."""
    pctx.set_poll_params(MAX_NS, 2, 2)
    dog = watchdog(pctx, 5.0)
    e = qloop_module.EventNotifier()
    log = []
    flag = [False]

    def io_poll(*args):
        log.append(("poll", args))
        return flag[0]

    def io_poll_ready(*args):
        flag[0] = False
        log.append(("ready", args))

    try:
        pctx.set_fd_handler(e, io_read=lambda *args: (e.test_and_clear(), log.append(("read", args))),
                            io_poll=io_poll, io_poll_ready=io_poll_ready)
        pctx.poll(False)
        e.set()
        assert pctx.poll(True) is True
        assert log == [("read", ())]
        flag[0] = True
        assert pctx.poll(True) is True
        assert ("ready", ()) in log
        assert all(args == () for _, args in log)
        assert not dog.fired
    finally:
        pctx.set_fd_handler(e)
        e.close()


def test_io_poll_only_handler_is_never_polled_or_dispatched(pctx, qloop_module, sockpair):
    """A handler with only io_poll/io_poll_ready has no fd events, so it never
    fires, never joins the poll list and is never polled (master); it is not a removal."""
    rt = qloop_module.ClockType.REALTIME
    pctx.set_poll_params(MAX_NS, 2, 2)
    a, b = sockpair()
    log = []
    pctx.set_fd_handler(a, io_poll=lambda: log.append("poll") or True,
                        io_poll_ready=lambda: log.append("ready"))
    b.send(b"x")  # readable, but nobody asked for IN
    try:
        pctx.poll(False)
        ran = []
        t = pctx.timer_new_ns(rt, lambda: ran.append(1))
        t.mod_ns(qloop_module.clock_get_ns(rt) + 10_000_000)
        for _ in range(100):
            if ran:
                break
            pctx.poll(True)
        assert ran == [1]
        assert log == []
    finally:
        pctx.set_fd_handler(a)
