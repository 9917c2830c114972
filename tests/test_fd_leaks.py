"""No fd leaks: creating and closing contexts and notifiers leaves /proc/self/fd unchanged."""

from __future__ import annotations

import gc
import os

import pytest

from conftest import skip_without_io_uring

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")


def open_fds() -> set[int]:
    gc.collect()
    return {int(name) for name in os.listdir("/proc/self/fd")}


@pytest.mark.parametrize("fdmon", ["auto", "poll", "epoll", "io_uring"])
def test_context_create_close(qloop_module, fdmon):
    if fdmon == "io_uring":
        skip_without_io_uring(qloop_module)
    before = open_fds()
    for _ in range(50):
        ctx = qloop_module.AioContext(fdmon=fdmon)
        ctx.poll(False)
        ctx.close()
    assert open_fds() == before


def test_context_manager_closes(qloop_module):
    before = open_fds()
    for _ in range(50):
        with qloop_module.AioContext() as ctx:
            ctx.bh_schedule_oneshot(lambda: None)
            ctx.poll(False)
    assert open_fds() == before


def test_upgraded_context_close(qloop_module):
    notifiers = [qloop_module.EventNotifier() for _ in range(70)]
    before = open_fds()
    for _ in range(5):
        ctx = qloop_module.AioContext(fdmon="auto")
        for e in notifiers:
            ctx.set_event_notifier(e, lambda n: n.test_and_clear())
        ctx.poll(False)
        assert ctx.fdmon == "epoll"
        ctx.close()
    assert open_fds() == before
    for e in notifiers:
        e.close()


def test_context_with_pending_work_close(qloop_module, sockpair):
    a, b = sockpair()
    before = open_fds()
    for _ in range(20):
        ctx = qloop_module.AioContext()
        ctx.set_fd_handler(a, io_read=lambda: None, io_write=lambda: None)
        ctx.bh_new(lambda: None).schedule()
        t = ctx.timer_new_ns(qloop_module.ClockType.REALTIME, lambda: None)
        t.mod_ns(0)
        ctx.close()
    assert open_fds() == before
    os.fstat(a.fileno())  # the user's fd is left open
    os.fstat(b.fileno())


@pytest.mark.parametrize("use_pipe", [False, True], ids=["eventfd", "pipe"])
def test_event_notifier_create_close(qloop_module, use_pipe):
    before = open_fds()
    for _ in range(100):
        e = qloop_module.EventNotifier(use_pipe=use_pipe)
        e.set()
        e.close()
    for _ in range(100):
        with qloop_module.EventNotifier(active=True, use_pipe=use_pipe) as e:
            e.test_and_clear()
    assert open_fds() == before


@pytest.mark.parametrize("use_pipe", [False, True], ids=["eventfd", "pipe"])
def test_event_notifier_registered_then_closed(qloop_module, use_pipe):
    before = open_fds()
    with qloop_module.AioContext() as ctx:
        for _ in range(20):
            e = qloop_module.EventNotifier(use_pipe=use_pipe)
            ctx.set_event_notifier(e, lambda n: n.test_and_clear())
            e.set()
            ctx.poll(False)
            ctx.set_event_notifier(e, None)
            e.close()
    assert open_fds() == before


def test_context_opens_few_fds(qloop_module):
    before = open_fds()
    ctx = qloop_module.AioContext()
    try:
        during = open_fds()
        assert 1 <= len(during - before) <= 4  # its own notifier (+ epoll instance)
    finally:
        ctx.close()
    assert open_fds() == before
