"""Cross-thread wake-ups (docs/notify.md; the IOThread cases of QEMU's tests): no lost wake-up,
no hang.

Every blocking wait is bounded by a REALTIME watchdog timer on the context and
every thread is joined with a timeout, so a lost wake-up fails the test instead
of hanging it.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

WATCHDOG_S = 5.0


def owner_loop(ctx, done, dog, limit_s=20.0):
    """Poll blocking until ``done()``; fail if the watchdog had to wake us."""
    deadline = time.monotonic() + limit_s
    while not done():
        assert not dog.fired, "watchdog fired: a wake-up was lost"
        assert time.monotonic() < deadline, "owner loop did not finish"
        ctx.poll(True)


def test_notify_from_other_thread_wakes_blocking_poll(ctx, watchdog, threads):
    dog = watchdog(ctx, WATCHDOG_S)
    assert ctx.poll(False) is False
    threads.start(ctx.notify)
    result = ctx.poll(True)
    threads.join_all()
    assert result is False  # notify is never progress
    assert not dog.fired


def test_schedule_from_other_thread_wakes_blocking_poll(ctx, watchdog, threads):
    dog = watchdog(ctx, WATCHDOG_S)
    assert ctx.poll(False) is False
    ran = []
    bh = ctx.bh_new(lambda: ran.append(threading.get_ident()))
    threads.start(bh.schedule)
    owner_loop(ctx, lambda: ran, dog)
    threads.join_all()
    assert ran == [threading.get_ident()]  # the callback ran in the polling thread
    bh.delete()


def test_event_notifier_set_from_other_thread(ctx, qloop_module, watchdog, threads):
    dog = watchdog(ctx, WATCHDOG_S)
    got = []
    with qloop_module.EventNotifier() as e:
        ctx.set_event_notifier(e, lambda n: got.append(n.test_and_clear()))
        assert ctx.poll(False) is False
        threads.start(e.set)
        owner_loop(ctx, lambda: got, dog)
        threads.join_all()
        assert got == [True]
        ctx.set_event_notifier(e, None)


def test_fd_handler_registered_from_other_thread(ctx, watchdog, threads, sockpair):
    """Registration from another thread wakes a sleeping poll, which sees the fd."""
    dog = watchdog(ctx, WATCHDOG_S)
    assert ctx.poll(False) is False
    a, b = sockpair()
    b.send(b"x")
    got = []

    def register():
        ctx.set_fd_handler(a, io_read=lambda: got.append(a.recv(10)))

    threads.start(register)
    owner_loop(ctx, lambda: got, dog)
    threads.join_all()
    assert got == [b"x"]
    ctx.set_fd_handler(a)


def test_timer_armed_from_other_thread_wakes_sleeping_poll(ctx, qloop_module, watchdog, threads):
    rt = qloop_module.ClockType.REALTIME
    dog = watchdog(ctx, WATCHDOG_S)
    assert ctx.poll(False) is False
    ran = []
    t = ctx.timer_new_ns(rt, lambda: ran.append(qloop_module.clock_get_ns(rt)))
    deadline = []

    def arm():
        deadline.append(qloop_module.clock_get_ns(rt) + 10_000_000)
        t.mod_ns(deadline[0])

    threads.start(arm)
    owner_loop(ctx, lambda: ran, dog)
    threads.join_all()
    assert ran[0] >= deadline[0]


@pytest.mark.parametrize("nthreads", [1, 4])
def test_pingpong_no_lost_wakeup(ctx, watchdog, threads, nthreads):
    """Each producer schedules its BH and waits until the owner ran it, many times."""
    rounds = 3_000
    dog = watchdog(ctx, 15.0)
    assert ctx.poll(False) is False
    counts = [0] * nthreads
    events = [threading.Event() for _ in range(nthreads)]
    failures = []

    def make_cb(i):
        def cb():
            counts[i] += 1
            events[i].set()

        return cb

    bhs = [ctx.bh_new(make_cb(i)) for i in range(nthreads)]

    def producer(i):
        for r in range(rounds):
            events[i].clear()
            bhs[i].schedule()
            if not events[i].wait(3.0):
                failures.append((i, r))
                return
            if r % 7 == 0:
                ctx.notify()

    for i in range(nthreads):
        threads.start(producer, i)
    deadline = time.monotonic() + 30
    while sum(counts) < nthreads * rounds and not failures:
        assert time.monotonic() < deadline
        ctx.poll(True)
        if dog.fired:
            break
    threads.join_all()
    assert failures == [], f"lost wake-ups (thread, round): {failures}"
    assert counts == [rounds] * nthreads
    assert not dog.fired
    for bh in bhs:
        bh.delete()


def test_stress_oneshots_and_notify_counts_match(ctx, watchdog, threads):
    """Several threads schedule one-shot BHs and call notify() while the owner polls."""
    nthreads, per_thread = 4, 20_000
    dog = watchdog(ctx, 15.0)
    assert ctx.poll(False) is False
    counts = [0] * nthreads
    owner = threading.get_ident()
    wrong_thread = []

    def make_cb(i):
        def cb():
            if threading.get_ident() != owner:
                wrong_thread.append(i)
            counts[i] += 1

        return cb

    def producer(i):
        cb = make_cb(i)
        for k in range(per_thread):
            ctx.bh_schedule_oneshot(cb)
            if k % 3 == 0:
                ctx.notify()

    for i in range(nthreads):
        threads.start(producer, i)
    deadline = time.monotonic() + 30
    while sum(counts) < nthreads * per_thread:
        assert time.monotonic() < deadline, f"only {sum(counts)} BHs ran"
        assert not dog.fired, "watchdog fired: a wake-up was lost"
        ctx.poll(True)
    threads.join_all()
    assert counts == [per_thread] * nthreads
    assert wrong_thread == []
    assert ctx.poll(False) is False
    assert counts == [per_thread] * nthreads


def test_stress_shared_bh_schedule_from_threads(ctx, watchdog, threads):
    """Concurrent schedule() of one BH: it runs at least once after the last schedule."""
    dog = watchdog(ctx, 15.0)
    assert ctx.poll(False) is False
    runs = [0]
    bh = ctx.bh_new(lambda: runs.__setitem__(0, runs[0] + 1))
    finished = threading.Event()

    def producer():
        for _ in range(2_000):
            bh.schedule()

    for _ in range(3):
        threads.start(producer)

    def closer():
        for t in threads.threads[:3]:
            t.join(10)
        finished.set()
        ctx.bh_schedule_oneshot(lambda: None)  # wake the owner one last time

    threads.start(closer)
    deadline = time.monotonic() + 30
    while not finished.is_set():
        assert time.monotonic() < deadline
        assert not dog.fired
        ctx.poll(True)
    threads.join_all()
    while ctx.poll(False):
        pass
    assert 1 <= runs[0] <= 6_000
    assert ctx.compute_timeout() != 0  # nothing left scheduled
    bh.delete()


def test_lifecycle_iothreads(qloop_module, threads):
    """Five 'IOThreads' each poll their own context; one-shot BHs run in them."""
    nthreads = 5
    ctxs = [qloop_module.AioContext() for _ in range(nthreads)]
    running = [True] * nthreads

    def iothread(i):
        c = ctxs[i]
        deadline = time.monotonic() + 20
        while running[i] and time.monotonic() < deadline:
            c.poll(True)

    try:
        started = []
        for i in range(nthreads):
            started.append(threads.start(iothread, i))
        for round_ in range(3):
            seen = [None] * nthreads
            done = [threading.Event() for _ in range(nthreads)]
            for i in range(nthreads):
                def cb(i=i):
                    seen[i] = threading.get_ident()
                    done[i].set()

                ctxs[i].bh_schedule_oneshot(cb)
            for i in range(nthreads):
                assert done[i].wait(5.0), f"round {round_}: BH on ctx {i} did not run"
            assert seen == [t.ident for t in started]
            assert len(set(seen)) == nthreads
            assert threading.get_ident() not in seen
        # Join: a one-shot BH that stops each loop, then thread join.
        for i in range(nthreads):
            ctxs[i].bh_schedule_oneshot(lambda i=i: running.__setitem__(i, False))
        threads.join_all(10.0)
        assert running == [False] * nthreads
    finally:
        for i in range(nthreads):
            running[i] = False
            ctxs[i].notify()
        for t in threads.threads:
            t.join(5.0)
        for c in ctxs:
            c.close()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_schedule_from_signal_handler_wakes_blocking_poll(ctx, watchdog):
    """BH scheduling is safe from a Python signal handler and wakes a sleeping poll."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    dog = watchdog(ctx, WATCHDOG_S)
    assert ctx.poll(False) is False
    ran = []
    bh = ctx.bh_new(lambda: ran.append(1))
    old = signal.signal(signal.SIGALRM, lambda signum, frame: bh.schedule())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        deadline = time.monotonic() + 10
        while not ran:
            assert not dog.fired, "the signal's BH did not wake the poll"
            assert time.monotonic() < deadline
            ctx.poll(True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert ran == [1]
    bh.delete()


def test_schedule_from_signal_handler_while_not_polling(ctx):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    ran = []
    bh = ctx.bh_new(lambda: ran.append(1))
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: bh.schedule())
    try:
        signal.raise_signal(signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert ctx.poll(False) is True
    assert ran == [1]
    bh.delete()


def test_clock_enable_from_other_thread_wakes_poll(ctx, qloop_module, watchdog, threads):
    """Enabling a clock notifies its timer lists; a sleeping poll runs the due timer."""
    v = qloop_module.ClockType.VIRTUAL
    ran = []
    t = ctx.timer_new_ns(v, lambda: ran.append(1))
    t.mod_ns(0)
    dog = watchdog(ctx, WATCHDOG_S)
    assert ctx.poll(False) is False  # VIRTUAL disabled: the due timer does not run
    assert ran == []
    threads.start(qloop_module.clock_enable, v, True)
    owner_loop(ctx, lambda: ran, dog)
    threads.join_all()
    assert ran == [1]


def test_handler_removed_from_other_thread(ctx, watchdog, threads, sockpair):
    dog = watchdog(ctx, WATCHDOG_S)
    a, b = sockpair()
    calls = []
    ctx.set_fd_handler(a, io_read=lambda: calls.append(1))
    assert ctx.poll(False) is False
    threads.start(ctx.set_fd_handler, a)
    threads.join_all()
    b.send(b"x")
    assert ctx.poll(False) is False
    assert calls == []
    assert not dog.fired


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_signal_handler_exception_goes_to_exception_handler(ctx, watchdog, sockpair):
    """With an exception handler set, an Exception raised by a Python signal handler during
    the wait goes to it (as every callback exception does, docs/decisions.md): poll()
    returns normally, on both implementations."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted()

    got = []
    ctx.set_exception_handler(lambda c, e: got.append((c is ctx, type(e).__name__)))
    a, _ = sockpair()
    ctx.set_fd_handler(a, lambda: None)  # a real wait in both implementations
    dog = watchdog(ctx, WATCHDOG_S)
    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline and not dog.fired:
            ctx.poll(True)  # never raises: the handler took it
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        ctx.set_fd_handler(a, None)
    assert got == [(True, "Interrupted")]
    assert not dog.fired


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_signal_handler_exception_interrupts_blocking_poll(ctx, watchdog):
    """An exception raised by a Python signal handler while poll(True) sleeps comes out of
    poll() (so Ctrl-C works), and the context stays usable."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted()

    ctx.set_exception_handler(None)  # the case without a handler: poll() raises it
    dog = watchdog(ctx, WATCHDOG_S)
    assert ctx.poll(False) is False
    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        with pytest.raises(Interrupted):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not dog.fired:
                ctx.poll(True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not dog.fired
    ctx.bh_schedule_oneshot(lambda: None)
    assert ctx.poll(False) is True


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_signal_during_wait_does_not_fire_timer_early(ctx, qloop_module, poll_until):
    """A signal interrupting the wait (EINTR) may end poll(True) early, but timers never
    fire early and the handler runs."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    rt = qloop_module.ClockType.REALTIME
    got = []
    old = signal.signal(signal.SIGALRM, lambda s, f: got.append(s))
    try:
        ran = []
        t = ctx.timer_new_ns(rt, lambda: ran.append(qloop_module.clock_get_ns(rt)))
        deadline = qloop_module.clock_get_ns(rt) + 40_000_000
        t.mod_ns(deadline)
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        poll_until(ctx, lambda: ran)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert got == [signal.SIGALRM]
    assert ran[0] >= deadline


def test_blocking_wait_releases_the_gil(ctx, watchdog, threads):
    """While one thread sleeps in poll(True), other Python threads keep running."""
    dog = watchdog(ctx, WATCHDOG_S)
    assert ctx.poll(False) is False
    about_to_poll = threading.Event()
    results = []

    def owner():
        about_to_poll.set()
        results.append(ctx.poll(True))

    start = time.monotonic()
    threads.start(owner)
    assert about_to_poll.wait(5)
    spin_end = time.monotonic() + 0.05  # longer than the GIL switch interval
    spins = 0
    while time.monotonic() < spin_end:
        spins += 1
    ctx.notify()
    threads.join_all(10.0)
    elapsed = time.monotonic() - start
    assert not dog.fired, "the poll only returned through the watchdog: GIL held while waiting?"
    assert elapsed < WATCHDOG_S / 2
    assert results == [False]
    assert spins > 0


def test_stress_timers_armed_from_threads(ctx, qloop_module, watchdog, threads):
    """Timers created and armed (due) from other threads all run exactly once in the owner."""
    rt = qloop_module.ClockType.REALTIME
    nthreads, per_thread = 3, 2_000
    dog = watchdog(ctx, 15.0)
    assert ctx.poll(False) is False
    counts = [0] * nthreads
    keep = []

    def producer(i):
        def cb():
            counts[i] += 1

        for k in range(per_thread):
            t = ctx.timer_new_ns(rt, cb)
            t.mod_ns(k % 7)  # due at once; equal expiries too
            if k % 50 == 0:
                keep.append(t)

    for i in range(nthreads):
        threads.start(producer, i)
    deadline = time.monotonic() + 30
    while sum(counts) < nthreads * per_thread:
        assert time.monotonic() < deadline, f"only {sum(counts)} timers ran"
        assert not dog.fired, "watchdog fired: a wake-up was lost"
        ctx.poll(True)
    threads.join_all()
    assert counts == [per_thread] * nthreads
    assert not any(t.pending for t in keep)
    assert ctx.poll(False) is False
