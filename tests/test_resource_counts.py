"""``AioContext.resource_counts()``: (scheduled BHs, armed timers, fd handlers), read-only.

The leak checks of ``conftest.py`` rely on it, so every way a count goes up or down is
checked here, on both implementations.
"""

from __future__ import annotations

import threading

import pytest


def fresh(qloop_module):
    c = qloop_module.AioContext()
    while c.poll(False):
        pass
    return c


@pytest.fixture
def bare(qloop_module):
    """A context outside the checked fixtures (these tests leave things behind on purpose)."""
    c = fresh(qloop_module)
    yield c
    c.close()


def test_fresh_context_counts_nothing(bare):
    assert bare.resource_counts() == (0, 0, 0)  # its own notifier is not counted


def test_bh_counts_while_scheduled(bare):
    ran = []
    bh = bare.bh_new(lambda: ran.append(1))
    assert bare.resource_counts() == (0, 0, 0)  # created, not scheduled
    bh.schedule()
    bh.schedule()  # idempotent: still one
    assert bare.resource_counts() == (1, 0, 0)
    assert bare.poll(False) is True
    assert ran == [1]
    assert bare.resource_counts() == (0, 0, 0)


def test_bh_cancel_delete_and_idle(bare):
    a = bare.bh_new(lambda: None)
    b = bare.bh_new(lambda: None)
    c = bare.bh_new(lambda: None)
    a.schedule()
    b.schedule()
    c.schedule_idle()
    assert bare.resource_counts()[0] == 3
    a.cancel()
    assert bare.resource_counts()[0] == 2
    b.delete()
    assert bare.resource_counts()[0] == 1  # the idle one still runs
    a.schedule()  # cancel then schedule again before the pass: it runs
    assert bare.resource_counts()[0] == 2
    bare.poll(False)
    assert bare.resource_counts() == (0, 0, 0)


def test_oneshot_counts_until_it_runs(bare):
    bare.bh_schedule_oneshot(lambda: None)
    assert bare.resource_counts() == (1, 0, 0)
    assert bare.poll(False) is True
    assert bare.resource_counts() == (0, 0, 0)


def test_bh_scheduled_from_another_thread_counts(bare):
    bh = bare.bh_new(lambda: None)
    t = threading.Thread(target=bh.schedule)
    t.start()
    t.join(5)
    assert not t.is_alive()
    assert bare.resource_counts() == (1, 0, 0)
    bh.delete()
    assert bare.resource_counts() == (0, 0, 0)


def test_bh_rescheduled_by_its_callback_counts_during_the_pass(bare):
    seen = []

    def cb():
        bh.schedule()
        seen.append(bare.resource_counts())

    bh = bare.bh_new(cb)
    bh.schedule()
    bare.poll(False)
    assert seen == [(1, 0, 0)]  # waits for the next pass
    bh.delete()
    assert bare.resource_counts() == (0, 0, 0)


def test_timers_count_while_armed(qloop_module, bare):
    rt = qloop_module.ClockType.REALTIME
    ts = [bare.timer_new_ns(clock, lambda: None) for clock in qloop_module.ClockType]
    assert bare.resource_counts() == (0, 0, 0)
    for t in ts:
        t.mod_ns(2**62)  # far beyond now on every clock (HOST is wall time)
    assert bare.resource_counts() == (0, 4, 0)
    ts[0].mod_ns(2**61)  # re-arming does not count twice
    assert bare.resource_counts() == (0, 4, 0)
    ts[1].delete()
    ts[1].delete()
    assert bare.resource_counts() == (0, 3, 0)
    ts[0].mod_ns(qloop_module.clock_get_ns(rt) - 1)  # due now
    assert bare.poll(False) is True
    assert bare.resource_counts() == (0, 2, 0)
    ts[2].delete()
    ts[3].delete()
    assert bare.resource_counts() == (0, 0, 0)


def test_many_timers_rearmed_and_deleted(qloop_module, bare):
    rt = qloop_module.ClockType.REALTIME
    ts = [bare.timer_new_ns(rt, lambda: None) for _ in range(300)]
    for i, t in enumerate(ts):
        t.mod_ns(10**18 + i)
    for t in ts[::2]:
        t.mod_ns(10**18 - 1)  # stale entries pile up inside the heap
    for t in ts[::3]:
        t.delete()
    assert bare.resource_counts() == (0, 300 - 100, 0)
    for t in ts:
        t.delete()
    assert bare.resource_counts() == (0, 0, 0)


def test_fd_handlers_count_while_registered(qloop_module, bare, sockpair):
    a, _ = sockpair()
    bare.set_fd_handler(a, io_read=lambda: None)
    bare.set_fd_handler(a, io_read=lambda: None, io_write=lambda: None)  # replaced: still one
    assert bare.resource_counts() == (0, 0, 1)
    n = qloop_module.EventNotifier()
    try:
        bare.set_event_notifier(n, lambda e: e.test_and_clear())
        assert bare.resource_counts() == (0, 0, 2)
        bare.set_event_notifier(n, None)
    finally:
        n.close()
    bare.set_fd_handler(a)
    assert bare.resource_counts() == (0, 0, 0)


def test_closed_context_counts_nothing(qloop_module, sockpair):
    c = fresh(qloop_module)
    a, _ = sockpair()
    c.bh_new(lambda: None).schedule()
    c.timer_new_ms(qloop_module.ClockType.REALTIME, lambda: None).mod(10**12)
    c.set_fd_handler(a, io_read=lambda: None)
    assert c.resource_counts() == (1, 1, 1)
    c.close()
    assert c.resource_counts() == (0, 0, 0)


def test_counting_changes_nothing(qloop_module, bare):
    """Reading the counts does not run, absorb or drop anything."""
    ran = []
    bh = bare.bh_new(lambda: ran.append("bh"))
    bh.schedule()
    bh.cancel()
    bh.schedule()
    for _ in range(3):
        assert bare.resource_counts() == (1, 0, 0)
    assert ran == []
    assert bare.poll(False) is True
    assert ran == ["bh"]
