"""fd handlers (docs/aio-context.md; the event-notifier cases of QEMU's test-aio): add,
replace, remove, dispatch."""

from __future__ import annotations

import os

import pytest

FDMONS = ["poll", "epoll", "auto", "io_uring"]


@pytest.fixture(params=FDMONS)
def fctx(request, make_ctx):
    """A drained context for each fd monitor."""
    return make_ctx(fdmon=request.param)


# -- basic read / write / remove -----------------------------------------------------


def test_registration_alone_is_not_progress(fctx, sockpair):
    a, _ = sockpair()
    calls = []
    fctx.set_fd_handler(a, io_read=lambda: calls.append("r"))
    assert fctx.poll(False) is False
    assert calls == []
    fctx.set_fd_handler(a)


def test_io_read_on_readable(fctx, sockpair, recv_all):
    a, b = sockpair()
    calls = []

    def io_read():
        calls.append(recv_all(a))

    fctx.set_fd_handler(a.fileno(), io_read=io_read)
    assert fctx.poll(False) is False
    b.send(b"hello")
    assert fctx.poll(False) is True
    assert calls == [b"hello"]
    assert fctx.poll(False) is False
    assert calls == [b"hello"]
    fctx.set_fd_handler(a.fileno())


def test_level_triggered_read(fctx, sockpair):
    a, b = sockpair()
    calls = []
    fctx.set_fd_handler(a, io_read=lambda: calls.append(1))
    b.send(b"x")
    for i in range(1, 4):
        assert fctx.poll(False) is True
        assert len(calls) == i
    a.recv(10)
    assert fctx.poll(False) is False
    assert len(calls) == 3
    fctx.set_fd_handler(a)


def test_io_write_on_writable(fctx, sockpair):
    a, _ = sockpair()
    calls = []
    fctx.set_fd_handler(a, io_write=lambda: calls.append("w"))
    assert fctx.poll(False) is True
    assert fctx.poll(False) is True
    assert calls == ["w", "w"]
    fctx.set_fd_handler(a)
    assert fctx.poll(False) is False
    assert calls == ["w", "w"]


def test_read_only_handler_ignores_writability(fctx, sockpair):
    a, _ = sockpair()  # writable, not readable
    calls = []
    fctx.set_fd_handler(a, io_read=lambda: calls.append("r"))
    assert fctx.poll(False) is False
    assert calls == []
    fctx.set_fd_handler(a)


def test_read_and_write_in_one_pass_read_first(fctx, sockpair):
    a, b = sockpair()
    calls = []
    fctx.set_fd_handler(a, io_read=lambda: calls.append("r"), io_write=lambda: calls.append("w"))
    b.send(b"x")
    assert fctx.poll(False) is True
    assert calls == ["r", "w"]
    fctx.set_fd_handler(a)


def test_remove_handler(fctx, sockpair):
    a, b = sockpair()
    calls = []
    fctx.set_fd_handler(a, io_read=lambda: calls.append(1))
    b.send(b"x")
    assert fctx.poll(False) is True
    fctx.set_fd_handler(a, None, None, None, None)
    assert fctx.poll(False) is False
    assert fctx.poll(False) is False
    assert calls == [1]


def test_removing_unregistered_fd_is_harmless(fctx, sockpair):
    a, _ = sockpair()
    fctx.set_fd_handler(a)
    assert fctx.poll(False) is False


def test_replace_handler_outside_dispatch(fctx, sockpair):
    a, b = sockpair()
    calls = []
    fctx.set_fd_handler(a, io_read=lambda: calls.append("old"))
    fctx.set_fd_handler(a, io_read=lambda: calls.append("new"))
    b.send(b"x")
    assert fctx.poll(False) is True
    assert calls == ["new"]
    fctx.set_fd_handler(a)


def test_fd_object_with_fileno(fctx, sockpair):
    a, b = sockpair()
    calls = []
    fctx.set_fd_handler(a, io_read=lambda: calls.append(1))  # socket object
    b.send(b"x")
    assert fctx.poll(False) is True
    fctx.set_fd_handler(a.fileno())  # removal by number finds the same handler
    assert fctx.poll(False) is False
    assert calls == [1]


def test_hup_calls_io_read(fctx):
    r, w = os.pipe()
    try:
        calls = []
        fctx.set_fd_handler(r, io_read=lambda: calls.append(os.read(r, 10)))
        assert fctx.poll(False) is False
        os.close(w)
        w = -1
        assert fctx.poll(False) is True
        assert calls == [b""]
        fctx.set_fd_handler(r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_event_without_matching_callback_is_not_progress(fctx):
    """A reported event with no callback for it (HUP on a write-only handler)."""
    r, w = os.pipe()
    try:
        calls = []
        fctx.set_fd_handler(r, io_write=lambda: calls.append("w"))
        os.close(w)
        w = -1
        assert fctx.poll(False) is False
        assert calls == []
        fctx.set_fd_handler(r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_callbacks_receive_no_arguments(fctx, sockpair):
    a, b = sockpair()
    got = []
    fctx.set_fd_handler(
        a,
        io_read=lambda *args, **kw: got.append(("r", args, kw)),
        io_write=lambda *args, **kw: got.append(("w", args, kw)),
    )
    b.send(b"x")
    fctx.poll(False)
    assert got == [("r", (), {}), ("w", (), {})]
    fctx.set_fd_handler(a)


def test_many_fds_each_dispatched_once(fctx, qloop_module):
    notifiers = [qloop_module.EventNotifier() for _ in range(20)]
    counts = [0] * 20
    try:
        for i, n in enumerate(notifiers):
            def cb(n, i=i):
                assert n.test_and_clear()
                counts[i] += 1
            fctx.set_event_notifier(n, cb)
        assert fctx.poll(False) is False
        for i in (3, 7, 19):
            notifiers[i].set()
        assert fctx.poll(False) is True
        assert fctx.poll(False) is False
        assert [i for i, c in enumerate(counts) if c] == [3, 7, 19]
        assert all(c <= 1 for c in counts)
    finally:
        for n in notifiers:
            fctx.set_event_notifier(n, None)
            n.close()


# -- dispatch order and replacement during dispatch (ppoll ordering) ---------------


def test_dispatch_order_oldest_registration_first(make_ctx, sockpair):
    """With ppoll, the ready list is dispatched oldest registration first
    (docs/aio-context.md, "Dispatch order")."""
    ctx = make_ctx(fdmon="poll")
    pairs = [sockpair() for _ in range(3)]
    order = []
    for i, (a, b) in enumerate(pairs):
        ctx.set_fd_handler(a, io_read=lambda i=i: order.append(i))
        b.send(b"x")
    assert ctx.poll(False) is True
    assert order == [0, 1, 2]
    # Re-registering fd 0 makes it the newest registration.
    ctx.set_fd_handler(pairs[0][0], io_read=lambda: order.append(0))
    order.clear()
    assert ctx.poll(False) is True
    assert order == [1, 2, 0]
    for a, _ in pairs:
        ctx.set_fd_handler(a)


def test_replace_inside_io_read_skips_old_io_write(fctx, sockpair):
    """Replacing a handler from its io_read: old io_write is not called this pass;
    the new node is not dispatched this pass either."""
    a, b = sockpair()
    calls = []

    def r1():
        calls.append("r1")
        fctx.set_fd_handler(a, io_read=lambda: calls.append("r2"), io_write=lambda: calls.append("w2"))

    fctx.set_fd_handler(a, io_read=r1, io_write=lambda: calls.append("w1"))
    b.send(b"x")  # readable and writable
    assert fctx.poll(False) is True
    assert calls == ["r1"]
    calls.clear()
    assert fctx.poll(False) is True
    assert calls == ["r2", "w2"]
    fctx.set_fd_handler(a)


def test_remove_inside_io_read_skips_io_write(fctx, sockpair):
    a, b = sockpair()
    calls = []

    def r():
        calls.append("r")
        fctx.set_fd_handler(a)

    fctx.set_fd_handler(a, io_read=r, io_write=lambda: calls.append("w"))
    b.send(b"x")
    assert fctx.poll(False) is True
    assert calls == ["r"]
    assert fctx.poll(False) is False
    assert calls == ["r"]


def test_removing_later_ready_handler_prevents_its_dispatch(make_ctx, sockpair):
    """A node removed by an earlier callback in the same pass is not dispatched."""
    ctx = make_ctx(fdmon="poll")
    (a1, b1), (a2, b2) = sockpair(), sockpair()
    calls = []

    def first():
        calls.append("first")
        ctx.set_fd_handler(a2)

    ctx.set_fd_handler(a1, io_read=first)
    ctx.set_fd_handler(a2, io_read=lambda: calls.append("second"))
    b1.send(b"x")
    b2.send(b"x")
    assert ctx.poll(False) is True
    assert calls == ["first"]
    ctx.set_fd_handler(a1)


def test_handler_added_during_dispatch_not_dispatched_this_pass(fctx, sockpair):
    (a1, b1), (a2, b2) = sockpair(), sockpair()
    calls = []

    def first():
        calls.append("first")
        a1.recv(10)
        fctx.set_fd_handler(a2, io_read=lambda: calls.append("second"))

    fctx.set_fd_handler(a1, io_read=first)
    b1.send(b"x")
    b2.send(b"x")
    assert fctx.poll(False) is True
    assert calls == ["first"]
    assert fctx.poll(False) is True
    assert calls == ["first", "second"]
    fctx.set_fd_handler(a1)
    fctx.set_fd_handler(a2)


def test_nested_poll_dispatches_ready_handler_once(fctx, sockpair, recv_all):
    """A node ready in both the outer and a nested poll is dispatched once."""
    (a1, b1), (a2, b2) = sockpair(), sockpair()
    calls = []
    nested = []

    def read1():
        calls.append("a1")
        recv_all(a1)
        nested.append(fctx.poll(False))

    def read2():
        calls.append("a2")
        recv_all(a2)

    fctx.set_fd_handler(a1, io_read=read1)
    fctx.set_fd_handler(a2, io_read=read2)
    b1.send(b"x")
    b2.send(b"x")
    assert fctx.poll(False) is True
    assert sorted(calls) == ["a1", "a2"]
    assert fctx.poll(False) is False
    fctx.set_fd_handler(a1)
    fctx.set_fd_handler(a2)


# -- event notifiers: QEMU's test-aio event cases ----------------------------------


def make_counter_cb(state):
    """QEMU's event_ready_cb: the notifier must be set; count; auto re-set while active."""

    def cb(notifier):
        assert notifier.test_and_clear()
        state["n"] += 1
        if state["active"] > 0:
            state["active"] -= 1
        if state.get("auto_set") and state["active"]:
            notifier.set()

    return cb


def test_set_event_notifier_add_remove(fctx, qloop_module):
    """Registering an unset notifier (its notify consumed without progress), then
    unregistering it: the callback never runs."""
    state = {"n": 0, "active": 0}
    with qloop_module.EventNotifier() as e:
        fctx.set_event_notifier(e, make_counter_cb(state))
        assert fctx.poll(False) is False
        assert state["n"] == 0
        fctx.set_event_notifier(e, None)
        assert fctx.poll(False) is False
        assert state["n"] == 0


def test_wait_event_notifier(fctx, qloop_module):
    """A registered notifier that is set runs its callback once (which clears it); the next
    poll is not progress; once unregistered it is not called again."""
    state = {"n": 0, "active": 1}
    with qloop_module.EventNotifier() as e:
        fctx.set_event_notifier(e, make_counter_cb(state))
        while fctx.poll(False):
            pass
        assert state["n"] == 0
        assert state["active"] == 1
        e.set()
        assert fctx.poll(False) is True
        assert state["n"] == 1
        assert state["active"] == 0
        assert fctx.poll(False) is False
        assert state["n"] == 1
        fctx.set_event_notifier(e, None)
        assert fctx.poll(False) is False
        assert state["n"] == 1


def test_wait_event_notifier_noflush(fctx, qloop_module, poll_until):
    """A set notifier keeps a blocking poll from blocking; with a second notifier registered,
    each set runs the first one's callback exactly once, and setting the second one does not
    call it."""
    data = {"n": 0, "active": 0}
    dummy = {"n": 0, "active": 0}
    with qloop_module.EventNotifier() as e, qloop_module.EventNotifier() as d:
        fctx.set_event_notifier(e, make_counter_cb(data))
        assert fctx.poll(False) is False
        assert data["n"] == 0
        # Should not block: the notifier is set.
        e.set()
        assert fctx.poll(True) is True
        data["n"] = 0

        fctx.set_event_notifier(d, make_counter_cb(dummy))
        e.set()
        assert fctx.poll(False) is True
        assert data["n"] == 1
        assert fctx.poll(False) is False
        assert data["n"] == 1

        e.set()
        assert fctx.poll(False) is True
        assert data["n"] == 2
        assert fctx.poll(False) is False
        assert data["n"] == 2

        d.set()
        poll_until(fctx, lambda: dummy["n"] == 1)
        assert data["n"] == 2
        assert dummy["n"] == 1

        fctx.set_event_notifier(d, None)
        fctx.set_event_notifier(e, None)
        assert fctx.poll(False) is False
        assert data["n"] == 2


def test_flush_event_notifier(fctx, qloop_module, poll_until):
    """A callback that re-sets its notifier is seen on the next poll."""
    state = {"n": 0, "active": 10, "auto_set": True}
    with qloop_module.EventNotifier() as e:
        fctx.set_event_notifier(e, make_counter_cb(state))
        assert fctx.poll(False) is False
        assert state["n"] == 0
        e.set()
        assert fctx.poll(False) is True
        assert state["n"] == 1
        assert state["active"] == 9
        assert fctx.poll(False) is True
        assert state["n"] == 2
        poll_until(fctx, lambda: state["active"] == 0)
        assert state["n"] == 10
        assert fctx.poll(False) is False
        assert state["n"] == 10
        fctx.set_event_notifier(e, None)
        assert fctx.poll(False) is False


def test_event_notifier_pipe_works_with_context(fctx, qloop_module):
    state = {"n": 0, "active": 0}
    with qloop_module.EventNotifier(use_pipe=True) as e:
        fctx.set_event_notifier(e, make_counter_cb(state))
        assert fctx.poll(False) is False
        e.set()
        e.set()
        assert fctx.poll(False) is True
        assert fctx.poll(False) is False
        assert state["n"] == 1
        fctx.set_event_notifier(e, None)


def test_err_calls_io_read_and_io_write(fctx):
    """ERR triggers both the read and the write callback."""
    r, w = os.pipe()
    os.close(r)  # the write end now reports POLLERR
    try:
        calls = []
        fctx.set_fd_handler(w, io_read=lambda: calls.append("r"))
        assert fctx.poll(False) is True
        assert calls == ["r"]
        calls.clear()
        fctx.set_fd_handler(w, io_read=lambda: calls.append("r"), io_write=lambda: calls.append("w"))
        assert fctx.poll(False) is True
        assert calls == ["r", "w"]
        fctx.set_fd_handler(w)
    finally:
        os.close(w)
